"""Keys, scopes and organisation isolation."""

from __future__ import annotations

import time

import pytest

from labric.server import LocalServer

from ._support import FakeClock, Wire

#: Every API route, the scope it needs, and a request that gets past authentication.
ROUTES = [
    ("GET", "/v1/files", "read"),
    ("POST", "/v1/files", "write"),
    ("POST", "/v1/files/upload-url", "write"),
    ("GET", "/v1/files/some-id", "read"),
    ("DELETE", "/v1/files/some-id", "write"),
    ("POST", "/v1/files/some-id/confirm-upload", "write"),
    ("GET", "/v1/files/some-id/upload-status", "read"),
    ("GET", "/v1/files/some-id/content", "read"),
    ("POST", "/v1/job-executions", "write"),
    ("PATCH", "/v1/job-executions/some-id", "write"),
    ("GET", "/v1/admin/faults", "admin"),
    ("PUT", "/v1/admin/faults", "admin"),
    ("GET", "/v1/admin/stats", "admin"),
    ("DELETE", "/v1/admin/stats", "admin"),
]
WEAKER = {"read": None, "write": "read", "admin": "write"}


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
async def test_each_route_enforces_its_scope(
    wire: Wire, server: LocalServer, method: str, path: str, scope: str
) -> None:
    weaker = WEAKER[scope]
    if weaker is not None:
        reply = await wire.call(method, path, key=server.create_key(weaker))
        assert reply.status == 403
        assert f"'{scope}' scope" in reply.detail
    # The scope itself (and anything stronger) gets past authorisation.
    reply = await wire.call(method, path, key=server.create_key(scope))
    assert reply.status not in (401, 403), reply.body
    assert (await wire.call(method, path, key=None)).status == 401


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer lbk_nope",
        "Bearer lbk_abcd1234_NotTheSecret",
        "Bearer sk_live_123",
        "lbk_abcd1234_secret",
    ],
)
async def test_bad_keys_are_401(wire: Wire, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    reply = await wire.get("/v1/files", key=None, headers=headers)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert isinstance(reply.detail, str)


async def test_wrong_secret_for_a_real_prefix_is_401(wire: Wire, server: LocalServer) -> None:
    key = server.create_key("read")
    prefix = key.rsplit("_", 1)[0]
    assert (await wire.get("/v1/files", key=key)).status == 200
    assert (await wire.get("/v1/files", key=prefix + "_Wrong0Secret")).status == 401


async def test_revoked_and_expired_keys_are_401(wire: Wire, server: LocalServer) -> None:
    revoked = server.create_key("read")
    assert server.revoke_key(revoked)
    reply = await wire.get("/v1/files", key=revoked)
    assert reply.status == 401
    assert "revoked" in reply.detail
    expired = server.create_key("read", expires_at=time.time() - 1)
    reply = await wire.get("/v1/files", key=expired)
    assert reply.status == 401
    assert "expired" in reply.detail


async def test_key_expiry_follows_the_clock(
    swire: Wire, small: LocalServer, clock: FakeClock
) -> None:
    key = small.create_key("read", expires_at=clock.now + 60)
    assert (await swire.get("/v1/files", key=key)).status == 200
    clock.advance(61)
    assert (await swire.get("/v1/files", key=key)).status == 401


async def test_scopes_are_validated(server: LocalServer) -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        server.create_key("read,root")


async def test_organisations_are_isolated(wire: Wire, server: LocalServer) -> None:
    instrument = server.create_instrument("A's scope")
    mine = await wire.upload(b"secret", "a.csv", instrument_id=instrument)
    pending = await wire.ticket("b.csv", instrument_id=instrument)
    execution = (await wire.post("/v1/job-executions")).json()["job_execution_id"]

    other = server.create_key("read,write", org="Org B")
    file_id = mine["file_id"]
    for method, path in [
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/content"),
        ("GET", f"/v1/files/{file_id}/upload-status"),
        ("POST", f"/v1/files/{file_id}/confirm-upload"),
        ("DELETE", f"/v1/files/{file_id}"),
        ("POST", f"/v1/files/{pending['file_id']}/confirm-upload"),
    ]:
        reply = await wire.call(method, path, key=other)
        assert reply.status == 404, (method, path)
    patch = await wire.patch(
        f"/v1/job-executions/{execution}", key=other, json={"status": "failed"}
    )
    assert patch.status == 404
    assert (await wire.get("/v1/files", key=other)).json() == []
    attributed = await wire.post(
        "/v1/files/upload-url",
        key=other,
        json={"file_name": "x.csv", "instrument_id": instrument},
    )
    assert attributed.status == 404
    attributed = await wire.post(
        "/v1/files/upload-url",
        key=other,
        json={"file_name": "x.csv", "job_execution_id": execution},
    )
    assert attributed.status == 404
    # And org A still sees its own file, untouched.
    assert (await wire.get(f"/v1/files/{file_id}")).status == 200
    assert [f["file_id"] for f in (await wire.get("/v1/files")).json()] == [file_id]


async def test_storage_routes_ignore_api_keys(wire: Wire, instrument: str) -> None:
    ticket = await wire.ticket(instrument_id=instrument)
    unsigned = ticket["upload_url"].split("?")[0]
    reply = await wire.put(
        unsigned, data=b"x", headers={"Authorization": f"Bearer {wire.key}", **ticket["headers"]}
    )
    assert reply.status == 403

"""The transport against real aiohttp.web servers on 127.0.0.1: retries, timeouts, pool, auth."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import web

import labric._core.transport as transport_module
from labric import RetryPolicy, Timeout, __version__
from labric._core.transport import Response
from labric.errors import (
    APIConnectionError,
    APITimeoutError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)

from ._support import KEY, SECRET, MakeClient, ScriptedServer, json_response

MB = 1024 * 1024


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the transport computed before each retry (it still sleeps for each)."""
    seen: list[float] = []
    real = transport_module.retry_delay

    def spy(*args: Any, **kwargs: Any) -> float:
        delay = real(*args, **kwargs)
        seen.append(delay)
        return delay

    monkeypatch.setattr(transport_module, "retry_delay", spy)
    return seen


# -- retries --------------------------------------------------------------------------------------


async def test_503_twice_then_200_reuses_the_idempotency_key(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    api.script(
        "POST",
        "/api/v1/things",
        [
            json_response({"detail": "busy"}, status=503),
            json_response({"detail": "busy"}, status=503),
            json_response({"id": "t1"}, status=201),
        ],
    )
    client = make_client()
    response = await client._transport.request("POST", "/v1/things", json={"name": "x"})
    assert response.status == 201
    assert response.json() == {"id": "t1"}
    attempts = api.seen("POST", "/api/v1/things")
    assert len(attempts) == 3
    keys = {a.headers["Idempotency-Key"] for a in attempts}
    assert len(keys) == 1
    (key,) = keys
    assert len(key) >= 16
    assert all(a.json() == {"name": "x"} for a in attempts)
    assert client._transport.retries == 2


async def test_each_call_gets_its_own_idempotency_key(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    api.on("PATCH", "/api/v1/things/1", lambda r: _ok())
    api.on("GET", "/api/v1/things/1", lambda r: _ok())
    client = make_client()
    await client._transport.request("PATCH", "/v1/things/1", json={})
    await client._transport.request("PATCH", "/v1/things/1", json={})
    await client._transport.request("GET", "/v1/things/1")
    patches = api.seen("PATCH")
    assert patches[0].headers["Idempotency-Key"] != patches[1].headers["Idempotency-Key"]
    assert "Idempotency-Key" not in api.seen("GET")[0].headers


async def test_caller_supplied_idempotency_key_is_kept(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    api.script("POST", "/api/v1/things", [json_response({}, status=409), json_response({})])
    client = make_client()
    await client._transport.request("POST", "/v1/things", json={}, idempotency_key="resume-7")
    assert [a.headers["Idempotency-Key"] for a in api.requests] == ["resume-7", "resume-7"]


async def _ok() -> web.Response:
    return web.json_response({})


async def test_429_retry_after_ms_is_honoured(
    api: ScriptedServer, make_client: MakeClient, delays: list[float]
) -> None:
    api.script(
        "GET",
        "/api/v1/files/f1",
        [
            json_response({"detail": "slow down"}, status=429, **{"retry-after-ms": "10"}),
            json_response({"file_id": "f1"}),
        ],
    )
    client = make_client()
    assert (await client.files.get("f1")).file_id == "f1"
    assert delays == [pytest.approx(0.010)]
    first, second = api.requests
    assert second.at - first.at >= 0.009  # it really waited


async def test_server_delay_is_capped(
    api: ScriptedServer, make_client: MakeClient, delays: list[float]
) -> None:
    api.script(
        "GET",
        "/api/v1/files/f1",
        [json_response({}, status=503, Retry_After="3600"), json_response({"file_id": "f1"})],
    )
    policy = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.01, max_server_delay=0.02)
    client = make_client(retry=policy)
    await client.files.get("f1")
    assert delays == [0.02]


async def test_retries_are_exhausted_then_the_error_is_raised(
    api: ScriptedServer, make_client: MakeClient, delays: list[float]
) -> None:
    api.script(
        "GET",
        "/api/v1/files/f1",
        [json_response({"detail": "hold on"}, status=429, X_Request_ID=f"r{i}") for i in range(3)],
    )
    client = make_client()
    with pytest.raises(RateLimitError) as info:
        await client.files.get("f1")
    assert len(api.requests) == 3
    assert info.value.request_id == "r2"  # the last attempt's
    assert len(delays) == 2
    assert all(0.0005 <= d <= 0.01 for d in delays)  # backoff within the policy


@pytest.mark.parametrize("status", [501, 505, 400, 404, 422])
async def test_permanent_statuses_are_not_retried(
    api: ScriptedServer, make_client: MakeClient, status: int
) -> None:
    api.on("GET", "/api/v1/files/f1", lambda r: _status(status))
    client = make_client()
    with pytest.raises(Exception) as info:
        await client.files.get("f1")
    assert getattr(info.value, "status_code", None) == status
    assert len(api.requests) == 1


async def _status(status: int) -> web.Response:
    return web.json_response({"detail": f"status {status}"}, status=status)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(408, None), (409, ConflictError), (429, RateLimitError), (500, InternalServerError)],
)
async def test_retryable_statuses(
    api: ScriptedServer, make_client: MakeClient, status: int, cls: type[Exception] | None
) -> None:
    api.on("GET", "/api/v1/files/f1", lambda r: _status(status))
    client = make_client(max_retries=1)
    with pytest.raises(cls or Exception):
        await client.files.get("f1")
    assert len(api.requests) == 2


async def test_per_call_max_retries(api: ScriptedServer, make_client: MakeClient) -> None:
    api.on("GET", "/api/v1/x", lambda r: _status(503))
    client = make_client()
    with pytest.raises(InternalServerError):
        await client._transport.request("GET", "/v1/x", max_retries=0)
    assert len(api.requests) == 1


async def test_connection_reset_is_retried(api: ScriptedServer, make_client: MakeClient) -> None:
    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()  # RST before any response byte
        return web.Response()

    api.script("POST", "/api/v1/things", [reset, json_response({"id": "t1"})])
    client = make_client()
    response = await client._transport.request("POST", "/v1/things", json={})
    assert response.json() == {"id": "t1"}
    first, second = api.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


async def test_connection_reset_without_retries_raises(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    api.on("GET", "/api/v1/files/f1", reset)
    client = make_client(max_retries=0)
    with pytest.raises(APIConnectionError) as info:
        await client.files.get("f1")
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.path == "/api/v1/files/f1"
    assert isinstance(info.value.__cause__, Exception)  # the aiohttp error is chained


async def test_connection_refused(make_client: MakeClient) -> None:
    client = make_client(base_url="http://127.0.0.1:9/api", max_retries=0)
    with pytest.raises(APIConnectionError, match=r"Could not connect to 127\.0\.0\.1:9"):
        await client.files.get("f1")


async def test_programming_errors_are_not_mapped_or_retried(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    client = make_client()
    with pytest.raises(TypeError, match="not JSON serializable"):
        await client._transport.request("POST", "/v1/things", json={"when": object()})
    assert api.requests == []


# -- timeouts -------------------------------------------------------------------------------------


async def test_stalled_socket_times_out(api: ScriptedServer, make_client: MakeClient) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)  # headers go out, then nothing
        await api.released.wait()
        return response

    api.on("GET", "/api/v1/files/f1", stall)
    client = make_client(timeout=Timeout(connect=1.0, read=0.2), max_retries=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(APITimeoutError) as info:
        await client.files.get("f1")
    elapsed = loop.time() - started
    assert len(api.requests) == 2  # a timeout is retried
    assert elapsed >= 0.4  # both attempts waited out their read timeout (the stall is endless)
    assert "timed out" in str(info.value)
    assert info.value.path == "/api/v1/files/f1"


async def test_slow_but_steady_body_is_not_killed(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    chunk = b"x" * (128 * 1024)
    chunks = 16  # 2 MiB
    gap = 0.03  # well under the read timeout; the whole body takes far longer than it

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(chunk) * chunks)})
        await response.prepare(request)
        for _ in range(chunks):
            await response.write(chunk)
            await asyncio.sleep(gap)  # pacing the body, not synchronising the test
        await response.write_eof()
        return response

    api.on("GET", "/api/v1/big", trickle)
    client = make_client(timeout=Timeout(connect=1.0, read=0.15), max_retries=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client._transport.request("GET", "/v1/big")
    assert len(response.content) == 2 * MB
    assert loop.time() - started > 0.15 * 2  # longer than the read timeout, many times over


async def test_stalled_storage_stream_times_out(
    storage: ScriptedServer, make_client: MakeClient
) -> None:
    async def stall_midway(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(MB)})
        await response.prepare(request)
        await response.write(b"y" * 1000)
        await storage.released.wait()
        return response

    storage.on("GET", "/bucket/obj", stall_midway)
    client = make_client(timeout=Timeout(connect=1.0, read=0.2))
    url = f"{storage.origin}/bucket/obj?sig=abc123"
    with pytest.raises(APITimeoutError) as info:
        async with client._transport.stream("GET", url) as resp:
            await resp.read()
    assert info.value.path == "/bucket/obj"
    assert "abc123" not in str(info.value)


async def test_stream_lets_the_callers_own_errors_through(
    storage: ScriptedServer, make_client: MakeClient
) -> None:
    storage.on("GET", "/bucket/obj", lambda r: _ok())
    client = make_client()
    url = f"{storage.origin}/bucket/obj"
    with pytest.raises(ValueError, match="mine"):
        async with client._transport.stream("GET", url):
            raise ValueError("mine")
    with pytest.raises(OSError, match="disk full"):
        async with client._transport.stream("GET", url):
            raise OSError(28, "disk full")


async def test_stream_status_error_has_no_signature(
    storage: ScriptedServer, make_client: MakeClient
) -> None:
    async def expired(request: web.Request) -> web.Response:
        return web.Response(status=403, text="<Error>SignatureDoesNotMatch</Error>")

    storage.on("PUT", "/bucket/obj", expired)
    client = make_client()
    url = f"{storage.origin}/bucket/obj?X-Signature=topsecretsig"
    with pytest.raises(Exception) as info:
        async with client._transport.stream("PUT", url, data=b"abc"):
            pass
    assert getattr(info.value, "status_code", None) == 403
    assert "topsecretsig" not in str(info.value)


# -- the connection pool --------------------------------------------------------------------------


async def test_pool_limit_is_respected(api: ScriptedServer, make_client: MakeClient) -> None:
    in_flight = 0
    peak = 0
    two_in = asyncio.Event()
    gate = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 2:
            two_in.set()
        try:
            await gate.wait()
        finally:
            in_flight -= 1
        return web.json_response({"file_id": "f"})

    api.on("GET", "/api/v1/files/f", hold)
    client = make_client(max_connections=2)
    calls = [asyncio.ensure_future(client.files.get("f")) for _ in range(10)]
    await asyncio.wait_for(two_in.wait(), 5)
    # Both slots are held; the other eight requests are queued for a slot, not on the wire.
    assert len(api.requests) == 2
    gate.set()
    results = await asyncio.gather(*calls)
    assert len(results) == 10
    assert peak == 2
    assert len({r.peer_port for r in api.requests}) <= 2  # two connections, reused


async def test_waiting_for_a_pool_slot_counts_as_connect_timeout(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    entered = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        entered.set()
        await api.released.wait()
        return web.json_response({})

    api.on("GET", "/api/v1/slow", hold)
    client = make_client(max_connections=1, timeout=Timeout(connect=0.2, read=30), max_retries=0)
    blocker = asyncio.ensure_future(client._transport.request("GET", "/v1/slow"))
    await asyncio.wait_for(entered.wait(), 5)
    with pytest.raises(APITimeoutError, match="connect"):
        await client._transport.request("GET", "/v1/slow")
    blocker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocker


# -- headers --------------------------------------------------------------------------------------


async def test_authorization_and_user_agent_to_the_api(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    api.on("GET", "/api/v1/files/f1", lambda r: _json({"file_id": "f1"}))
    client = make_client()
    await client.files.get("f1")
    (seen,) = api.requests
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert f"labric-python/{__version__}" in seen.headers["User-Agent"]


async def _json(data: Any) -> web.Response:
    return web.json_response(data)


async def test_storage_stream_never_gets_the_key(
    api: ScriptedServer, storage: ScriptedServer, make_client: MakeClient
) -> None:
    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"bytes!")

    storage.on("GET", "/bucket/obj", blob)
    api.on("GET", "/api/v1/blob", blob)
    client = make_client()
    for url in (f"{storage.origin}/bucket/obj?sig=1", f"{api.origin}/api/v1/blob?sig=1"):
        async with client._transport.stream(
            "GET", url, headers={"Authorization": f"Bearer {KEY}", "x-goog-hash": "crc32c=AAAA"}
        ) as resp:
            assert await resp.read() == b"bytes!"
    (stored,) = storage.requests
    assert "Authorization" not in stored.headers
    assert stored.headers["x-goog-hash"] == "crc32c=AAAA"
    assert f"labric-python/{__version__}" in stored.headers["User-Agent"]
    # Even on the API's own origin a storage stream carries its signature, not the key.
    assert "Authorization" not in api.requests[0].headers


async def test_api_request_to_another_origin_gets_no_key(
    storage: ScriptedServer, make_client: MakeClient
) -> None:
    storage.on("GET", "/elsewhere", lambda r: _json([]))
    client = make_client()
    assert not client._transport.is_api_origin(f"{storage.origin}/elsewhere")
    await client._transport.request("GET", f"{storage.origin}/elsewhere")
    assert "Authorization" not in storage.requests[0].headers


async def test_redirect_to_another_origin_drops_the_key(
    api: ScriptedServer, storage: ScriptedServer, make_client: MakeClient
) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{storage.origin}/bucket/obj?sig=xyz")

    async def blob(request: web.Request) -> web.Response:
        return web.json_response({"file_id": "f1"})

    api.on("GET", "/api/v1/files/f1", redirect)
    storage.on("GET", "/bucket/obj", blob)
    client = make_client()
    assert (await client.files.get("f1")).file_id == "f1"
    assert api.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    (followed,) = storage.requests
    assert "Authorization" not in followed.headers
    assert followed.query == {"sig": "xyz"}


async def test_redirect_within_the_api_keeps_the_key(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/api/v1/files/new")

    api.on("GET", "/api/v1/files/old", moved)
    api.on("GET", "/api/v1/files/new", lambda r: _json({"file_id": "new"}))
    client = make_client()
    assert (await client.files.get("old")).file_id == "new"
    assert all(r.headers["Authorization"] == f"Bearer {KEY}" for r in api.requests)


async def test_redirect_loop_is_cut(api: ScriptedServer, make_client: MakeClient) -> None:
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/api/v1/files/f1")

    api.on("GET", "/api/v1/files/f1", loop)
    client = make_client(max_retries=0)
    with pytest.raises(APIConnectionError, match="redirects"):
        await client.files.get("f1")


@pytest.mark.parametrize(
    ("url", "same"),
    [
        ("https://api.example.com/api/v1/x", True),
        ("https://api.example.com:443/other", True),
        ("https://API.example.com/api", True),
        ("http://api.example.com/api", False),
        ("https://api.example.com:8443/api", False),
        ("https://evil.example.com/api", False),
        ("https://api.example.com.evil.example/api", False),
        ("/api/v1/relative", False),
    ],
)
def test_is_api_origin(url: str, same: bool) -> None:
    from labric import AsyncLabric

    client = AsyncLabric(KEY, base_url="https://api.example.com/api")
    assert client._transport.is_api_origin(url) is same


async def test_request_id_ends_up_on_the_error(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    api.on(
        "GET",
        "/api/v1/files/missing",
        lambda r: _respond(
            json_response({"detail": "No such file"}, status=404, X_Request_ID="rq-9")
        ),
    )
    client = make_client()
    with pytest.raises(NotFoundError) as info:
        await client.files.get("missing")
    err = info.value
    assert err.request_id == "rq-9"
    assert err.detail == "No such file"
    assert err.method == "GET"
    assert err.path == "/api/v1/files/missing"
    assert str(err) == "404 No such file (GET /api/v1/files/missing) [request id rq-9]"


async def _respond(response: web.Response) -> web.Response:
    return response


async def test_query_parameters_on_the_wire(api: ScriptedServer, make_client: MakeClient) -> None:
    from datetime import UTC, datetime

    api.on("GET", "/api/v1/x", lambda r: _json([]))
    client = make_client()
    await client._transport.request(
        "GET",
        "/v1/x",
        params={
            "a": None,
            "flag": True,
            "off": False,
            "ext": ["csv", "txt"],
            "n": 5,
            "q": "plate 7 & more",
            "since": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        },
    )
    assert api.requests[0].query == {
        "flag": "true",
        "off": "false",
        "ext": "csv,txt",
        "n": "5",
        "q": "plate 7 & more",
        "since": "2024-05-01T12:00:00Z",
    }


def test_response_helpers() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    headers = CIMultiDictProxy(
        CIMultiDict({"x-request-id": "r1", "Link": '</api/v1/files?cursor=2>; rel="next"'})
    )
    response = Response(
        status=200,
        headers=headers,
        content=b"",
        method="GET",
        path="/api/v1/files",
        url="https://h.example/api/v1/files?cursor=1",
    )
    assert response.json() is None
    assert response.request_id == "r1"
    assert response.next_url == "https://h.example/api/v1/files?cursor=2"
    assert SECRET not in repr(response)


async def test_compressed_api_responses_are_decoded(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def gzipped(request: web.Request) -> web.Response:
        response = web.json_response([{"file_id": f"f{i}"} for i in range(500)])
        response.enable_compression(web.ContentCoding.gzip)
        return response

    api.on("GET", "/api/v1/files", gzipped)
    client = make_client()
    page = await client.files.list()
    assert len(page) == 500
    assert "gzip" in api.requests[0].headers.get("Accept-Encoding", "")


async def test_storage_streams_ask_for_the_stored_bytes(
    storage: ScriptedServer, make_client: MakeClient
) -> None:
    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"raw bytes")

    storage.on("GET", "/bucket/obj", blob)
    client = make_client()
    async with client._transport.stream("GET", f"{storage.origin}/bucket/obj") as resp:
        assert await resp.read() == b"raw bytes"
    assert storage.requests[0].headers["Accept-Encoding"] == "identity"


async def test_logs_never_show_the_key_or_a_signature(
    api: ScriptedServer,
    storage: ScriptedServer,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api.script(
        "POST",
        "/api/v1/things",
        [json_response({"detail": "busy"}, status=503), json_response({"id": 1})],
    )
    storage.on("PUT", "/bucket/obj", lambda r: _status(503))
    client = make_client()
    await client._transport.request("POST", "/v1/things?token=querysecret", json={"k": KEY})

    async def put_once() -> None:
        async with client._transport.stream("PUT", f"{storage.origin}/bucket/obj?sig=sigsecret"):
            pass

    with pytest.raises(InternalServerError):
        await client._transport.retrying(
            put_once, method="PUT", url=f"{storage.origin}/bucket/obj?sig=sigsecret"
        )
    # The client's own records (the test servers' access logs naturally show what they got).
    client_side = "\n".join(
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith(("aiohttp.access", "aiohttp.server", "aiohttp.web"))
    )
    assert "Retrying POST /api/v1/things" in client_side
    assert "Retrying PUT /bucket/obj" in client_side
    for secret in (SECRET, "querysecret", "sigsecret"):
        assert secret not in client_side

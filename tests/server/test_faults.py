"""Fault injection: the config parser, and the middleware on a small app over real sockets."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from labric import AsyncLabric, RetryPolicy
from labric.server import LocalServer
from labric.server.core.faults import (
    FAULT_HEADER,
    FaultConfig,
    FaultConfigError,
    FaultInjector,
    pace,
    parse_faults,
)

CHUNK = 16 * 1024
Reset = "reset"
RESET_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", FaultConfig()),
        ("off", FaultConfig()),
        ("error=0.1", FaultConfig(error=0.1)),
        (
            "error=0.1,throttle=0.03,reset=0.05,latency_ms=20,bandwidth=50000000,seed=7",
            FaultConfig(
                error=0.1, throttle=0.03, reset=0.05, latency_ms=20, bandwidth=50_000_000, seed=7
            ),
        ),
        (" reset = 0.5 , seed=0, ", FaultConfig(reset=0.5, seed=0)),
        ("bandwidth=1.5M", FaultConfig(bandwidth=1_500_000)),
        ("bandwidth=200kB/s", FaultConfig(bandwidth=200_000)),
        ("throttle=1,retry_after=3", FaultConfig(throttle=1.0, retry_after=3)),
        ("error=0.1,throttle=0.2,reset=0.7", FaultConfig(error=0.1, throttle=0.2, reset=0.7)),
    ],
)
def test_parse_faults_accepts(spec: str, expected: FaultConfig) -> None:
    assert parse_faults(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("errors=0.1", "unknown fault setting 'errors'; valid settings are error, throttle"),
        ("error=1.5", "error must be a fraction in [0, 1], got 1.5"),
        ("reset=-0.1", "reset must be a fraction in [0, 1]"),
        ("error=0.6,throttle=0.5", "error + throttle + reset must be at most 1, got 1.1"),
        ("latency_ms=-5", "latency_ms must be a number >= 0"),
        ("latency_ms=nan", "latency_ms must be a number >= 0"),
        ("bandwidth=-1", "bandwidth must be a whole number"),
        ("bandwidth=fast", "bandwidth must be a whole number, got 'fast'"),
        ("seed=1.5", "seed must be a whole number, got '1.5'"),
        ("error", "expected key=value"),
        ("error=", "expected key=value"),
        ("error=0.1,error=0.2", "'error' is given more than once"),
    ],
)
def test_parse_faults_rejects(spec: str, message: str) -> None:
    with pytest.raises(FaultConfigError) as excinfo:
        parse_faults(spec)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_json_round_trip_and_spec() -> None:
    config = FaultConfig(error=0.25, reset=0.05, latency_ms=12.5, bandwidth=1000, seed=3)
    assert FaultConfig.from_json(config.to_json()) == config
    assert config.to_json()["retry_after"] == 1
    assert parse_faults(config.to_spec()) == config
    assert FaultConfig().to_spec() == ""
    assert FaultConfig.from_json({"bandwidth": 5e7, "seed": None}) == FaultConfig(
        bandwidth=50_000_000
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"eror": 0.1}, "unknown fault setting 'eror'"),
        ({"error": True}, "error must be a fraction"),
        ({"error": "0.1"}, "error must be a fraction"),
        ({"bandwidth": 1.5}, "bandwidth must be a whole number"),
        ({"seed": "x"}, "seed must be a whole number or null"),
        ([1, 2], "faults must be a JSON object"),
    ],
)
def test_from_json_rejects(data: Any, message: str) -> None:
    with pytest.raises(FaultConfigError, match=message):
        FaultConfig.from_json(data)


@given(
    fractions=st.lists(st.floats(0, 1), min_size=3, max_size=3),
    latency_ms=st.floats(0, 1e4),
    bandwidth=st.integers(0, 10**10),
    seed=st.none() | st.integers(-(2**63), 2**63),
    retry_after=st.integers(0, 3600),
)
def test_spec_and_json_round_trip(
    fractions: list[float], latency_ms: float, bandwidth: int, seed: int | None, retry_after: int
) -> None:
    scale = max(1.0, sum(fractions))
    error, throttle, reset = (f / scale for f in fractions)
    if error + throttle + reset > 1:
        reset = max(0.0, 1 - error - throttle)
    config = FaultConfig(
        error=error,
        throttle=throttle,
        reset=reset,
        latency_ms=latency_ms,
        bandwidth=bandwidth,
        seed=seed,
        retry_after=retry_after,
    )
    assert parse_faults(config.to_spec()) == config
    assert FaultConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_active() -> None:
    assert not FaultConfig().active
    assert not FaultConfig(seed=4, retry_after=5).active
    assert FaultConfig(latency_ms=1).active
    assert FaultConfig(bandwidth=1).active


# --- a small app with the middleware -----------------------------------------------------------


@attrs.define
class App:
    injector: FaultInjector
    url: str
    #: Body bytes each upload handler saw before it finished or was reset.
    uploads: list[int] = attrs.Factory(list)
    plain_calls: int = 0


def build_app(injector: FaultInjector, state: App) -> web.Application:
    async def plain(request: web.Request) -> web.Response:
        state.plain_calls += 1
        return web.json_response({"ok": True})

    async def stream(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        sent = 0
        while sent < size:
            chunk = b"x" * min(CHUNK, size - sent)
            await response.write(chunk)
            sent += len(chunk)
            await pace(request, len(chunk), total=size)
        await response.write_eof()
        return response

    async def upload(request: web.Request) -> web.Response:
        received = 0
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                received += len(chunk)
                await pace(request, len(chunk))
        finally:
            state.uploads.append(received)
        return web.json_response({"received": received})

    async def admin(request: web.Request) -> web.Response:
        return web.json_response(injector.config.to_json())

    app = web.Application(middlewares=[injector.middleware])
    app.router.add_post("/plain", plain)
    app.router.add_get("/stream", stream)
    app.router.add_post("/upload", upload)
    app.router.add_get("/api/v1/admin/faults", admin)
    return app


@pytest.fixture
async def app() -> AsyncIterator[App]:
    injector = FaultInjector()
    state = App(injector=injector, url="")
    runner = web.AppRunner(build_app(injector, state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # A fresh connection per request, so a reset never leaves a dead one in the pool.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """Injected faults must not make aiohttp, asyncio or the server log errors."""
    with caplog.at_level(logging.WARNING):
        yield
    records = caplog.get_records("call")
    noisy = [r.getMessage() for r in records if r.name.startswith(("aiohttp", "asyncio", "labric"))]
    assert noisy == []


async def outcome(session: aiohttp.ClientSession, url: str) -> int | str:
    # POST: aiohttp's client quietly resends an idempotent request once after a disconnect.
    try:
        async with session.post(url) as response:
            await response.read()
            return response.status
    except RESET_ERRORS:
        return Reset


async def download(session: aiohttp.ClientSession, url: str) -> tuple[int, Exception | None]:
    """Read a streamed body; return the bytes that arrived and the error that ended it."""
    received = 0
    try:
        async with session.get(url) as response:
            assert response.status == 200
            async for chunk in response.content.iter_chunked(CHUNK):
                received += len(chunk)
    except aiohttp.ClientError as exc:
        return received, exc
    return received, None


async def outcomes(session: aiohttp.ClientSession, url: str, n: int) -> list[int | str]:
    return [await outcome(session, url) for _ in range(n)]


# --- behaviour ---------------------------------------------------------------------------------


async def test_no_faults_by_default(app: App, session: aiohttp.ClientSession) -> None:
    assert await outcomes(session, app.url + "/plain", 5) == [200] * 5
    assert app.injector.counters["requests"] == 5
    assert sum(v for k, v in app.injector.counters.items() if k != "requests") == 0


async def test_same_seed_same_outcomes(app: App, session: aiohttp.ClientSession) -> None:
    config = FaultConfig(error=0.3, throttle=0.2, reset=0.2, seed=11)
    app.injector.update(config)
    first = await outcomes(session, app.url + "/plain", 40)
    app.injector.update(config)
    second = await outcomes(session, app.url + "/plain", 40)
    assert first == second
    assert {200, 429, Reset} <= set(first)
    app.injector.update(attrs.evolve(config, seed=12))
    assert await outcomes(session, app.url + "/plain", 40) != first


async def test_rates_roughly_as_configured(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(error=0.2, throttle=0.1, reset=0.1, seed=5))
    results = await outcomes(session, app.url + "/plain", 400)
    errors = sum(r in (500, 503) for r in results)
    assert 50 <= errors <= 110
    assert 20 <= results.count(429) <= 65
    assert 20 <= results.count(Reset) <= 65
    assert 180 <= results.count(200) <= 300
    counters = app.injector.counters
    assert counters["errors_500"] + counters["errors_503"] == errors
    assert counters["errors_500"] > 0
    assert counters["errors_503"] > 0
    assert counters["throttled"] == results.count(429)
    assert counters["resets"] == results.count(Reset)
    # A reset still lets the handler run (the response is lost, not the request).
    assert app.plain_calls == results.count(200) + results.count(Reset)


async def test_error_and_throttle_responses(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(throttle=1.0))
    async with session.post(app.url + "/plain") as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert response.headers[FAULT_HEADER] == "throttle"
        assert "detail" in await response.json()

    app.injector.update(FaultConfig(throttle=1.0, retry_after=3))
    async with session.post(app.url + "/plain") as response:
        assert response.headers["Retry-After"] == "3"

    app.injector.update(FaultConfig(error=1.0, seed=1))
    for _ in range(6):
        async with session.post(app.url + "/plain") as response:
            assert response.status in (500, 503)
            assert response.headers[FAULT_HEADER] == "error"
            body = await response.json()
            assert str(response.status) in body["detail"]
    assert app.plain_calls == 0


async def test_reset_mid_download(app: App, session: aiohttp.ClientSession) -> None:
    size = 1024 * 1024
    app.injector.update(FaultConfig(reset=1.0, seed=2))
    for _ in range(3):
        received, error = await download(session, app.url + f"/stream?size={size}")
        assert isinstance(error, RESET_ERRORS)
        assert 0 < received < size
    assert app.injector.counters["resets"] == 3


async def test_reset_mid_upload(app: App, session: aiohttp.ClientSession) -> None:
    size = 2 * 1024 * 1024
    app.injector.update(FaultConfig(reset=1.0, seed=4))
    with pytest.raises(RESET_ERRORS):
        async with session.post(app.url + "/upload", data=io.BytesIO(b"u" * size)) as response:
            await response.read()
    assert len(app.uploads) == 1
    assert 0 < app.uploads[0] < size
    assert app.injector.counters["resets"] == 1

    app.injector.update(FaultConfig())
    async with session.post(app.url + "/upload", data=io.BytesIO(b"u" * size)) as response:
        assert await response.json() == {"received": size}


async def test_reset_without_streaming(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(reset=1.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.post(app.url + "/plain") as response:
            await response.read()
    assert app.plain_calls == 1
    assert app.injector.counters["resets"] == 1


async def test_bandwidth_cap(app: App, session: aiohttp.ClientSession) -> None:
    size = 200 * 1024
    app.injector.update(FaultConfig(bandwidth=1_000_000))
    started = time.monotonic()
    async with session.get(app.url + f"/stream?size={size}") as response:
        assert len(await response.read()) == size
    assert time.monotonic() - started >= 0.15

    started = time.monotonic()
    async with session.post(app.url + "/upload", data=io.BytesIO(b"u" * size)) as response:
        assert await response.json() == {"received": size}
    assert time.monotonic() - started >= 0.15
    assert app.injector.counters["bytes_paced"] == 2 * size


async def test_latency(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(latency_ms=100))
    started = time.monotonic()
    assert await outcome(session, app.url + "/plain") == 200
    assert time.monotonic() - started >= 0.08
    assert app.injector.counters["delayed"] == 1


async def test_admin_paths_are_exempt(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(error=0.5, reset=0.5, latency_ms=50, seed=1))
    for _ in range(10):
        async with session.get(app.url + "/api/v1/admin/faults") as response:
            assert response.status == 200
            assert (await response.json())["error"] == 0.5
    assert app.injector.counters["requests"] == 0
    assert app.injector.counters["delayed"] == 0


async def test_update_takes_effect_immediately(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(error=1.0))
    assert await outcome(session, app.url + "/plain") in (500, 503)
    app.injector.update(FaultConfig())
    assert await outcome(session, app.url + "/plain") == 200
    app.injector.update(FaultConfig(throttle=1.0))
    assert await outcome(session, app.url + "/plain") == 429
    app.injector.reset_counters()
    assert set(app.injector.counters.values()) == {0}


async def test_pace_without_middleware_is_a_no_op(session: aiohttp.ClientSession) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        await pace(request, 10)
        calls.append(1)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        assert await outcome(session, f"http://127.0.0.1:{runner.addresses[0][1]}/") == 200
    finally:
        await runner.cleanup()
    assert calls == [1]


# --- through the local server ------------------------------------------------------------------

TINY_RETRIES = RetryPolicy(
    max_retries=10, initial_delay=0.001, max_delay=0.01, max_server_delay=0.01
)


async def test_admin_route_turns_faults_on_and_off(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    admin = {"Authorization": f"Bearer {server.admin_key}"}
    faults_url = server.base_url + "/v1/admin/faults"
    files_url = server.base_url + "/v1/files"

    async with session.put(faults_url, json={"error": 1.0, "seed": 1}, headers=admin) as response:
        assert response.status == 200
        assert (await response.json())["config"]["error"] == 1.0
    for _ in range(3):
        async with session.get(files_url, headers=admin) as response:
            assert response.status in (500, 503)
            assert response.headers[FAULT_HEADER] == "error"
            assert "detail" in await response.json()
    async with session.get(faults_url, headers=admin) as response:
        assert response.status == 200
        counters = (await response.json())["counters"]
        assert counters["errors_500"] + counters["errors_503"] == 3

    async with session.put(
        faults_url, json={"throttle": 1.0, "retry_after": 2}, headers=admin
    ) as response:
        assert response.status == 200
    async with session.get(files_url, headers=admin) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"

    async with session.put(faults_url, json={}, headers=admin) as response:
        assert (await response.json())["config"] == FaultConfig().to_json()
    async with session.get(files_url, headers=admin) as response:
        assert response.status == 200
    assert server.faults.config == FaultConfig()


async def test_admin_route_validates_and_needs_admin(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    faults_url = server.base_url + "/v1/admin/faults"
    admin = {"Authorization": f"Bearer {server.admin_key}"}
    async with session.put(faults_url, json={"error": 2}, headers=admin) as response:
        assert response.status == 422
        assert "error must be a fraction" in json.dumps(await response.json())
    async with session.put(faults_url, json={"errors": 0.1}, headers=admin) as response:
        assert response.status == 422
        assert "valid settings are" in json.dumps(await response.json())

    writer = {"Authorization": f"Bearer {server.create_key('read,write')}"}
    async with session.put(faults_url, json={"error": 1.0}, headers=writer) as response:
        assert response.status == 403
    assert not server.faults.config.active


async def test_only_the_servers_own_organisation_changes_server_wide_settings(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    """Faults and counters are server-wide: another organisation's admin key may read its own
    view of them but not change them for everyone."""
    faults_url = server.base_url + "/v1/admin/faults"
    stats_url = server.base_url + "/v1/admin/stats"
    other = {"Authorization": f"Bearer {server.create_key(['admin'], org='other-lab')}"}
    async with session.put(faults_url, json={"error": 1.0}, headers=other) as response:
        assert response.status == 403
        assert "server's own organisation" in (await response.json())["detail"]
    assert not server.faults.config.active
    async with session.get(faults_url, headers=other) as response:
        assert response.status == 200
    async with session.get(stats_url, headers=other) as response:
        assert response.status == 200
    async with session.delete(stats_url, headers=other) as response:
        assert response.status == 403
    own = {"Authorization": f"Bearer {server.create_key(['admin'])}"}
    async with session.put(faults_url, json={"latency_ms": 1}, headers=own) as response:
        assert response.status == 200
    async with session.delete(stats_url, headers=own) as response:
        assert response.status == 204


async def test_faults_from_the_constructor(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with LocalServer(tmp_path / "srv", faults="throttle=1,retry_after=4") as srv:
        headers = {"Authorization": f"Bearer {srv.admin_key}"}
        async with session.get(srv.base_url + "/v1/files", headers=headers) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "4"


async def test_sdk_client_lists_through_errors(server: LocalServer) -> None:
    async with AsyncLabric(server.admin_key, base_url=server.base_url, retry=TINY_RETRIES) as c:
        uploaded = await c.files.upload(b"a,b\n1,2\n", name="faults.csv")
        server.faults.update(FaultConfig(error=0.3, seed=21))
        for _ in range(20):
            page = await c.files.list()
            assert [f.file_id for f in page] == [uploaded.file_id]
    counters = server.faults.counters
    assert counters["errors_500"] + counters["errors_503"] > 0


async def test_sdk_client_lists_through_mixed_faults(server: LocalServer) -> None:
    async with AsyncLabric(server.admin_key, base_url=server.base_url, retry=TINY_RETRIES) as c:
        uploaded = await c.files.upload(b"x" * 1000, name="mixed.bin")
        server.faults.update(FaultConfig(error=0.2, throttle=0.1, reset=0.1, seed=5))
        for _ in range(20):
            page = await c.files.list()
            assert [f.file_id for f in page] == [uploaded.file_id]
    counters = server.faults.counters
    assert counters["throttled"] > 0
    assert counters["resets"] > 0

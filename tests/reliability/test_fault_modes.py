"""The injector's burst and spike modes: 429s in runs with ``Retry-After``, latency spikes."""

from __future__ import annotations

import itertools
import time

import aiohttp
import pytest
from server.test_faults import App, app, no_server_errors, session

from labric import AsyncLabric
from labric.server import LocalServer
from labric.server.core.faults import FAULT_HEADER, FaultConfig, FaultConfigError, parse_faults

__all__ = ["app", "no_server_errors", "session"]


async def _statuses(
    session: aiohttp.ClientSession, url: str, n: int
) -> list[tuple[int, str | None]]:
    """``(status, Retry-After)`` of ``n`` sequential POSTs."""
    seen = []
    for _ in range(n):
        async with session.post(url) as response:
            await response.read()
            seen.append((response.status, response.headers.get("Retry-After")))
    return seen


def _runs_of_429(statuses: list[int]) -> list[int]:
    return [len(list(group)) for status, group in itertools.groupby(statuses) if status == 429]


def test_burst_and_spike_settings_parse_and_validate() -> None:
    config = parse_faults("throttle=0.05,throttle_burst=5,retry_after=2,spike=0.02,spike_ms=250")
    assert config == FaultConfig(
        throttle=0.05, throttle_burst=5, retry_after=2, spike=0.02, spike_ms=250
    )
    assert parse_faults(config.to_spec()) == config
    assert FaultConfig.from_json({"throttle_burst": 3.0}).throttle_burst == 3
    assert FaultConfig.from_json(config.to_json()) == config
    with pytest.raises(FaultConfigError, match="throttle_burst must be a whole number >= 1"):
        parse_faults("throttle_burst=0")
    with pytest.raises(FaultConfigError, match="spike must be a fraction"):
        FaultConfig(spike=1.5)
    with pytest.raises(FaultConfigError, match="spike_ms must be a number >= 0"):
        FaultConfig(spike_ms=-1)
    assert FaultConfig(spike=0.1, spike_ms=5).active
    assert not FaultConfig(spike=0.1).active  # a spike of no length injects nothing
    assert not FaultConfig(throttle_burst=9).active


async def test_throttles_come_in_bursts_each_with_retry_after(
    app: App, session: aiohttp.ClientSession
) -> None:
    config = FaultConfig(throttle=0.05, throttle_burst=4, retry_after=3, seed=8)
    app.injector.update(config)
    seen = await _statuses(session, app.url + "/plain", 300)
    statuses = [s for s, _ in seen]
    counters = dict(app.injector.counters)
    assert set(statuses) == {200, 429}
    assert all(after == "3" for status, after in seen if status == 429)
    assert counters["throttled"] == statuses.count(429)
    bursts = counters["throttle_bursts"]
    assert bursts >= 3
    # Bursts may touch (one drawn right after another ends), so a run is a whole number of
    # bursts, except one cut short by the end of the sequence.
    runs = _runs_of_429(statuses)
    if statuses[-1] == 429:
        runs.pop()
    assert runs
    assert all(length % 4 == 0 for length in runs), runs
    assert statuses.count(429) > bursts  # more 429s than draws: the bursts repeat them
    assert app.plain_calls == statuses.count(200)  # a throttled request never reaches the handler
    # The same seed gives the same bursts.
    app.injector.update(config)
    assert await _statuses(session, app.url + "/plain", 300) == seen


async def test_latency_spikes_hit_the_configured_fraction(
    app: App, session: aiohttp.ClientSession
) -> None:
    app.injector.update(FaultConfig(spike=0.25, spike_ms=1, error=0.1, seed=4))
    first = await _statuses(session, app.url + "/plain", 200)
    spikes = app.injector.counters["spikes"]
    assert 25 <= spikes <= 80
    assert app.injector.counters["delayed"] == 0  # no base latency, only spikes
    # Deterministic: the same seed spikes (and fails) the same requests.
    app.injector.update(FaultConfig(spike=0.25, spike_ms=1, error=0.1, seed=4))
    app.injector.reset_counters()
    assert await _statuses(session, app.url + "/plain", 200) == first
    assert app.injector.counters["spikes"] == spikes


async def test_a_spike_adds_its_delay(app: App, session: aiohttp.ClientSession) -> None:
    app.injector.update(FaultConfig(spike=1.0, spike_ms=120))
    started = time.monotonic()
    assert (await _statuses(session, app.url + "/plain", 1))[0][0] == 200
    assert time.monotonic() - started >= 0.1
    assert app.injector.counters["spikes"] == 1


async def test_admin_route_takes_burst_and_spike_settings(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    admin = {"Authorization": f"Bearer {server.admin_key}"}
    body = {"throttle": 1.0, "throttle_burst": 2, "spike": 0.5, "spike_ms": 1, "seed": 2}
    async with session.put(
        server.base_url + "/v1/admin/faults", json=body, headers=admin
    ) as response:
        assert response.status == 200
        got = await response.json()
    assert got["config"]["throttle_burst"] == 2
    assert got["config"]["spike_ms"] == 1
    async with session.get(server.base_url + "/v1/files", headers=admin) as response:
        assert response.status == 429
        assert response.headers[FAULT_HEADER] == "throttle"
    async with session.get(server.base_url + "/v1/admin/stats", headers=admin) as response:
        faults = (await response.json())["faults"]
    assert faults["throttle_bursts"] == 1
    assert faults["throttled"] == 1
    server.faults.update(FaultConfig())


@pytest.mark.parametrize("size", [10_000, 64 * 1024, 64 * 1024 + 1, 300_000])
async def test_an_injected_reset_cuts_every_download_short(server: LocalServer, size: int) -> None:
    """A reset is drawn within the body, so the client never gets the whole of it, whatever the
    size: also a body of one chunk, or a reset point inside the last chunk."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url) as client:
        uploaded = await client.files.upload(b"r" * size, name="reset.bin")
        url = (await client.files.content(uploaded.file_id)).download_url
    whole = 0
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for seed in range(12):
            server.faults.update(FaultConfig(reset=1.0, scope="storage", seed=seed))
            try:
                async with session.get(url) as response:
                    whole += len(await response.read()) == size
            except aiohttp.ClientError:
                pass
    server.faults.update(FaultConfig())
    assert server.faults.counters["resets"] == 12
    assert whole == 0


def test_the_api_document_describes_every_fault_setting() -> None:
    from labric.server.openapi import document

    schemas = document()["components"]["schemas"]
    fields = set(FaultConfig().to_json())
    assert set(schemas["FaultConfig"]["properties"]) == fields
    assert set(schemas["FaultConfigRequest"]["properties"]) == fields

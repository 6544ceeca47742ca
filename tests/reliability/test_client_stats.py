"""``client.stats``: the public counters of requests and retries that reports read."""

from __future__ import annotations

from pathlib import Path

import pytest
from transfer.conftest import make_client

from labric import Labric, TransportStats
from labric.errors import APIConnectionError, InternalServerError
from labric.server import FaultConfig, LocalServer


async def test_stats_count_attempts_and_retries_by_reason(
    parts_server: LocalServer, tmp_path: Path
) -> None:
    async with make_client(parts_server, tmp_path / "state", max_retries=3) as client:
        stats = client.stats
        assert isinstance(stats, TransportStats)
        assert stats.snapshot() == {"requests": 0, "retries": 0, "retries_by_reason": {}}
        await client.files.upload(b"a,b\n1,2\n", name="ok.csv")
        after_upload = stats.requests
        assert after_upload >= 3  # upload-url, PUT, confirm
        assert stats.retries == 0
        parts_server.faults.update(FaultConfig(error=1.0, scope="api", seed=5))
        with pytest.raises(InternalServerError):
            await client.files.get("whatever")
        injected = parts_server.faults.counters
        parts_server.faults.update(FaultConfig())
    # Four attempts, three of them retries, each caused by an injected 500 or 503.
    assert stats.requests - after_upload == 4
    assert stats.retries == 3
    assert sum(stats.retries_by_reason.values()) == 3
    assert set(stats.retries_by_reason) <= {"500", "503"}
    assert injected["errors_500"] + injected["errors_503"] == 4
    snap = stats.snapshot()
    stats.requests += 100
    assert snap["requests"] == stats.requests - 100  # a copy, not a view


async def test_connection_failures_are_counted_under_their_error_class(
    parts_server: LocalServer, tmp_path: Path
) -> None:
    async with make_client(parts_server, tmp_path / "state", max_retries=2) as client:
        parts_server.faults.update(FaultConfig(reset=1.0, scope="api", seed=1))
        with pytest.raises(APIConnectionError):
            await client.files.get("whatever")
        parts_server.faults.update(FaultConfig())
        assert client.stats.retries == 2
        assert client.stats.retries_by_reason == {"APIConnectionError": 2}


def test_the_sync_client_exposes_the_same_counters(tmp_path: Path) -> None:
    with (
        LocalServer.run_in_thread(tmp_path / "server") as srv,
        Labric(srv.admin_key, base_url=srv.base_url) as client,
    ):
        assert client.stats.requests == 0
        client.files.upload(b"x", name="x.csv")
        assert client.stats.requests >= 3
        assert client.stats.retries == 0

"""Load at a small setting: ``benchmarks.load`` with 24 clients for about a second, the server
throttling 5% of requests on purpose. No timing is asserted; the counts are.

``python -m benchmarks.load --clients 200 --seconds 20`` runs the same thing at full size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import KINDS, LoadConfig, percentile, run_load, table
from labric.server import LocalServer


async def test_concurrent_clients_lose_nothing(
    server: LocalServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = LoadConfig(clients=24, seconds=1.0, throttle=0.05, max_server_delay=0.02)
    report = await run_load(server.base_url, server.admin_key, config, tmp_path)
    print(table(report))
    request.node.user_properties.append(("load", report.to_json()))

    assert report.problems == []
    assert report.errors == {}
    # Every kind of operation ran, and every one is accounted for on the server.
    assert all(report.operations[kind] > 0 for kind in KINDS), report.operations
    assert report.files_listed == report.files_uploaded > 0
    assert report.rows_stored == report.distinct_tags == report.rows_written > 0
    # The 429s were the server's doing, and the clients retried them.
    assert report.server_429s > 0
    assert 0 < report.retries_by_reason["429"] <= report.server_429s
    assert report.client_requests <= report.server_requests
    for kind in (*KINDS, "all"):
        latency = report.latency_ms[kind]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, 0.0),
        ([5.0], 0.99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([float(i) for i in range(1, 101)], 0.99, 99.0),
        ([float(i) for i in range(1, 101)], 0.5, 50.0),
        ([3.0, 1.0, 2.0], 1.0, 3.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected

"""The fault soak at CI size: ``benchmarks.soak`` with 200 files plus a multi-part file.

``python -m benchmarks.soak --files 1000`` (or ``nox -s soak``) runs the same thing large.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import SoakConfig, run_soak, table

pytestmark = pytest.mark.slow


async def test_bulk_transfers_through_the_fault_soak_lose_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = SoakConfig(files=200, seed=7, throttle_burst=3)  # bursts, on top of the mix
    report = await run_soak(tmp_path, config)
    print(table(report))
    request.node.user_properties.append(("soak", report.to_json()))

    assert report.problems == []
    total = config.files + 1
    assert report.files == total
    # Nothing lost: one record per path, the server's CRC32C and the downloaded bytes match.
    assert report.records == total
    assert report.checksums_matched == total
    assert report.downloads_identical == total

    # Every kind of fault was injected, near the configured rates.
    faults = report.faults
    assert faults["errors_500"] > 0
    assert faults["errors_503"] > 0
    assert faults["resets"] > 0
    assert faults["throttle_bursts"] > 0
    assert faults["throttled"] > faults["throttle_bursts"]  # bursts, not single 429s
    assert faults["spikes"] > 0
    assert 0.06 <= (faults["errors_500"] + faults["errors_503"]) / faults["requests"] <= 0.14
    assert 0.02 <= faults["resets"] / faults["requests"] <= 0.08

    # The client retried every injected status once, and counted it under its cause; resets
    # show up as connection errors (those aiohttp resent unseen are the gap to the server's
    # request count).
    reasons = report.retries_by_reason
    assert reasons["500"] == faults["errors_500"]
    assert reasons["503"] == faults["errors_503"]
    assert reasons["429"] == faults["throttled"]
    assert 0 < reasons["APIConnectionError"] <= faults["resets"]
    assert report.retries == sum(reasons.values())
    assert report.client_requests <= report.server_requests
    # Resent bodies are counted by the server, so it received at least every byte once.
    assert report.server_bytes_received >= report.bytes_uploaded

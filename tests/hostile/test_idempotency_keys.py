"""The client reuses an ``Idempotency-Key`` only across the attempts of one call, and sends the
same request each time, so a server binding keys to requests (422 on reuse) never refuses it."""

from __future__ import annotations

import pytest
from aiohttp import web

from labric.errors import APIStatusError

from ._server import HostileServer


async def test_retries_of_a_write_repeat_the_request_under_one_key(
    hostile: HostileServer,
) -> None:
    @hostile.route("POST", "/api/v1/job-executions")
    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "try later"}, status=503)

    async with hostile.client(max_retries=2) as client:
        for name in ("first", "second"):
            with pytest.raises(APIStatusError):
                await client.jobs.executions.start(job_name=name, timeout_minutes=5)
    seen = hostile.seen("POST", "/api/v1/job-executions")
    assert len(seen) == 6
    calls = [seen[:3], seen[3:]]
    for attempts in calls:
        keys = {a.headers["Idempotency-Key"] for a in attempts}
        assert len(keys) == 1
        assert len({(a.path, tuple(sorted(a.query.items())), a.body) for a in attempts}) == 1
    assert calls[0][0].headers["Idempotency-Key"] != calls[1][0].headers["Idempotency-Key"]

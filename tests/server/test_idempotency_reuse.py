"""An ``Idempotency-Key`` is bound to the request it first answered: the same request replays,
any other request under that key (another body, query, path or method) is refused with 422."""

from __future__ import annotations

import asyncio

from labric import AsyncLabric
from labric.server import FaultConfig, LocalServer

from ._support import Wire


async def test_same_key_same_body_replays(wire: Wire) -> None:
    headers = {"Idempotency-Key": "same-1"}
    first = await wire.post("/v1/job-executions", headers=headers, json={"job_name": "a"})
    again = await wire.post("/v1/job-executions", headers=headers, json={"job_name": "a"})
    assert first.status == again.status == 200, first.body
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_same_key_different_body_is_422_and_runs_nothing(wire: Wire) -> None:
    headers = {"Idempotency-Key": "reused-1"}
    first = await wire.post("/v1/job-executions", headers=headers, json={"job_name": "a"})
    assert first.status == 200, first.body
    before = (await wire.get("/v1/job-executions")).json()
    other = await wire.post("/v1/job-executions", headers=headers, json={"job_name": "b"})
    assert other.status == 422
    assert "Idempotent-Replayed" not in other.headers
    [problem] = other.detail
    assert problem["loc"] == ["header", "Idempotency-Key"]
    assert problem["type"] == "idempotency_key_reused"
    assert "already used for a different request" in problem["msg"]
    assert "POST /api/v1/job-executions" in problem["msg"]
    assert (await wire.get("/v1/job-executions")).json() == before
    # The key still answers its own request.
    again = await wire.post("/v1/job-executions", headers=headers, json={"job_name": "a"})
    assert again.status == 200
    assert again.body == first.body


async def test_same_key_on_another_path_method_or_query_is_422(wire: Wire) -> None:
    headers = {"Idempotency-Key": "reused-2"}
    first = await wire.post("/v1/job-executions", headers=headers)
    assert first.status == 200, first.body
    execution = first.json()["job_execution_id"]
    closing = await wire.patch(
        f"/v1/job-executions/{execution}", headers=headers, json={"status": "completed"}
    )
    assert closing.status == 422, closing.body
    assert (await wire.get(f"/v1/job-executions/{execution}")).json()["status"] == "running"
    ticket = await wire.post("/v1/files/upload-url", headers=headers, json={"file_name": "a.csv"})
    assert ticket.status == 422, ticket.body
    queried = await wire.post("/v1/job-executions", headers=headers, params={"x": "1"})
    assert queried.status == 422, queried.body
    # Under another key, each of them runs.
    closing = await wire.patch(
        f"/v1/job-executions/{execution}",
        headers={"Idempotency-Key": "fresh"},
        json={"status": "completed"},
    )
    assert closing.status == 200, closing.body


async def test_concurrent_reuse_with_different_bodies_runs_one(wire: Wire) -> None:
    headers = {"Idempotency-Key": "burst-reuse"}
    replies = await asyncio.gather(
        *(
            wire.post("/v1/job-executions", headers=headers, json={"job_name": f"n{n}"})
            for n in range(6)
        )
    )
    assert sorted(r.status for r in replies) == [200] + [422] * 5


async def test_the_client_retrying_a_write_never_meets_the_422(server: LocalServer) -> None:
    # Resets land after the handler ran and its answer was stored: the retry, under the same key
    # with the same body, must get that answer back, not a 422 and not a second execution.
    server.faults.update(FaultConfig(error=0.2, reset=0.4, seed=3, scope="api"))
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=10) as client:
        started = [await client.jobs.executions.start(job_name=f"job {n}") for n in range(6)]
    faults = server.stats["faults"]
    assert faults["resets"] > 0
    assert faults["errors_500"] + faults["errors_503"] > 0
    server.faults.update(FaultConfig())
    async with AsyncLabric(server.admin_key, base_url=server.base_url) as client:
        listed = [e async for e in client.jobs.executions.list()]
    assert sorted(e.job_execution_id for e in listed) == sorted(e.job_execution_id for e in started)

"""Off-platform job executions, Idempotency-Key replay, and the admin routes."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import aiohttp

from labric.server import LocalServer

from ._support import FakeClock, Wire

# -- job executions -------------------------------------------------------------------------


async def test_start_with_no_body_uses_the_default_job(wire: Wire) -> None:
    reply = await wire.post("/v1/job-executions")
    assert reply.status == 200
    body = reply.json()
    assert set(body) == {
        "job_execution_id",
        "job_id",
        "job_name",
        "status",
        "started_at",
        "completed_at",
    }
    assert body["job_name"] == "Off-Platform Manual Job"
    assert body["status"] == "running"
    assert body["completed_at"] is None
    datetime.fromisoformat(body["started_at"])
    again = (await wire.post("/v1/job-executions", json={})).json()
    assert again["job_id"] == body["job_id"]
    assert again["job_execution_id"] != body["job_execution_id"]
    nulls = await wire.post("/v1/job-executions", json={"job_id": None, "job_name": None})
    assert nulls.json()["job_id"] == body["job_id"]


async def test_start_by_job_name_and_id(wire: Wire) -> None:
    named = (await wire.post("/v1/job-executions", json={"job_name": "nightly"})).json()
    assert named["job_name"] == "nightly"
    by_id = (
        await wire.post("/v1/job-executions", json={"job_id": named["job_id"], "job_name": "x"})
    ).json()
    assert by_id["job_id"] == named["job_id"]
    assert by_id["job_name"] == "nightly"  # job_name is ignored when job_id is given
    assert (await wire.post("/v1/job-executions", json={"job_id": "nope"})).status == 404
    for timeout in (0, 43201, "soon"):
        reply = await wire.post("/v1/job-executions", json={"timeout_minutes": timeout})
        assert reply.status == 422, timeout
        assert reply.detail[0]["loc"] == ["body", "timeout_minutes"]
    assert (await wire.post("/v1/job-executions", json={"timeout_minutes": 43200})).status == 200


async def test_close_is_terminal(wire: Wire) -> None:
    execution = (await wire.post("/v1/job-executions")).json()["job_execution_id"]
    path = f"/v1/job-executions/{execution}"
    done = await wire.patch(path, json={"status": "completed"})
    assert done.status == 200
    assert done.json()["status"] == "completed"
    assert done.json()["completed_at"] is not None
    again = await wire.patch(path, json={"status": "completed"})
    assert again.status == 200
    assert again.json() == done.json()
    changed = await wire.patch(path, json={"status": "failed"})
    assert changed.status == 400
    assert "cannot change" in changed.detail
    assert (await wire.patch(path, json={"status": "running"})).status == 422
    assert (await wire.patch(path, json={})).status == 422
    assert (await wire.patch("/v1/job-executions/nope", json={"status": "failed"})).status == 404


async def test_timeouts_fail_executions(swire: Wire, clock: FakeClock) -> None:
    started = (await swire.post("/v1/job-executions", json={"timeout_minutes": 5})).json()
    path = f"/v1/job-executions/{started['job_execution_id']}"
    clock.advance(4 * 60)
    assert (await swire.patch(path, json={"status": "completed"})).json()["status"] == "completed"
    late = (await swire.post("/v1/job-executions", json={"timeout_minutes": 5})).json()
    clock.advance(5 * 60 + 1)
    path = f"/v1/job-executions/{late['job_execution_id']}"
    reply = await swire.patch(path, json={"status": "failed"})
    assert reply.json()["status"] == "failed"
    assert (await swire.patch(path, json={"status": "completed"})).status == 400


# -- idempotency ----------------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_answer(wire: Wire) -> None:
    headers = {"Idempotency-Key": "run-42"}
    first = await wire.post("/v1/job-executions", headers=headers)
    second = await wire.post("/v1/job-executions", headers=headers)
    assert first.status == second.status == 200
    assert second.body == first.body
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    other = await wire.post("/v1/job-executions", headers={"Idempotency-Key": "run-43"})
    assert other.json()["job_execution_id"] != first.json()["job_execution_id"]
    plain = await wire.post("/v1/job-executions")
    assert plain.json()["job_execution_id"] != first.json()["job_execution_id"]


async def test_idempotency_replays_4xx_and_is_per_key(wire: Wire, server: LocalServer) -> None:
    headers = {"Idempotency-Key": "k1"}
    bad = await wire.post("/v1/job-executions", headers=headers, json={"job_id": "nope"})
    assert bad.status == 404
    replay = await wire.post("/v1/job-executions", headers=headers, json={"job_id": "nope"})
    assert replay.status == 404
    assert replay.headers["Idempotent-Replayed"] == "true"
    # The same idempotency key under another API key is a different request.
    other = await wire.post("/v1/job-executions", headers=headers, key=server.create_key("write"))
    assert other.status == 200


async def test_concurrent_duplicates_execute_once(wire: Wire) -> None:
    headers = {"Idempotency-Key": "burst"}
    replies = await asyncio.gather(
        *(wire.post("/v1/job-executions", headers=headers) for _ in range(8))
    )
    assert len({r.body for r in replies}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in replies) == 1


async def test_idempotency_survives_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with LocalServer(tmp_path / "d") as first:
        reply = await Wire(session, first).post(
            "/v1/job-executions", headers={"Idempotency-Key": "persist"}
        )
    async with LocalServer(tmp_path / "d") as second:
        replay = await Wire(session, second).post(
            "/v1/job-executions", headers={"Idempotency-Key": "persist"}
        )
    assert replay.body == reply.body
    assert replay.headers["Idempotent-Replayed"] == "true"


# -- admin ----------------------------------------------------------------------------------


async def test_faults_route(wire: Wire, server: LocalServer) -> None:
    reply = await wire.get("/v1/admin/faults")
    assert reply.status == 200
    assert reply.json()["config"]["error"] == 0.0
    assert "requests" in reply.json()["counters"]
    on = await wire.put("/v1/admin/faults", json={"error": 1.0, "seed": 3})
    assert on.status == 200
    assert on.json()["config"]["error"] == 1.0
    assert server.faults.config.error == 1.0
    failed = await wire.get("/v1/files")
    assert failed.status in (500, 503)
    assert failed.headers["X-Request-ID"]
    # Admin routes are exempt, so faults can be turned off again.
    off = await wire.put("/v1/admin/faults", json={})
    assert off.status == 200
    assert (await wire.get("/v1/files")).status == 200
    invalid = await wire.put("/v1/admin/faults", json={"error": 2})
    assert invalid.status == 422
    unknown = await wire.put("/v1/admin/faults", json={"chaos": 1})
    assert unknown.status == 422


async def test_stats_route(wire: Wire, instrument: str) -> None:
    assert (await wire.delete("/v1/admin/stats")).status == 204
    uploaded = await wire.upload(b"12345", instrument_id=instrument)
    stats = (await wire.get("/v1/admin/stats")).json()
    assert stats["storage"]["bytes_received"] == 5
    assert stats["storage"]["bytes_received_by_file"] == {uploaded["file_id"]: 5}
    assert stats["storage"]["object_puts"] == 1
    by_route = stats["requests"]["by_route"]
    assert by_route["POST /api/v1/files/upload-url"] == 1
    assert by_route["PUT /storage/v1/objects/{file_id}"] == 1
    assert by_route["POST /api/v1/files/{file_id}/confirm-upload"] == 1
    assert stats["requests"]["by_status"]["200"] >= 3
    assert "faults" in stats

"""Triggers firing, on a server that queues runs without starting them (no subprocesses)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import aiohttp

from labric import AsyncLabric
from labric.server import LocalServer

from ._support import FakeClock, Wire

DATA = b"well,value\nA1,0.5\n"


async def test_file_uploaded_fires_once_per_matching_confirmed_file(
    wire: Wire, paused: LocalServer, pclient: AsyncLabric
) -> None:
    reader = paused.create_instrument("reader")
    other = paused.create_instrument("other")
    job = await wire.create_job(
        "csv-parser",
        trigger_enabled=True,
        trigger_category="file_uploaded",
        trigger_instrument_id=reader,
        trigger_conditions={"file_name_pattern": "*.csv", "max_size_kb": 1},
    )
    any_instrument = await wire.create_job(
        "any-txt",
        trigger_enabled=True,
        trigger_category="file_uploaded",
        trigger_conditions={"file_extensions": [".txt"]},
    )
    matching = await wire.upload(DATA, "runs/plate1.csv", instrument_id=reader)
    # The SDK's upload and the multipart POST /v1/files both confirm, so both fire.
    sdk = await pclient.files.upload(DATA, name="plate2.csv", instrument_id=reader)
    form = aiohttp.FormData()
    form.add_field("instrument_id", reader)
    form.add_field("file", DATA, filename="plate3.csv")
    multipart = await wire.ok("POST", "/v1/files", data=form)
    await wire.upload(DATA, "notes.txt", instrument_id=reader)  # wrong pattern (fires any-txt)
    await wire.upload(DATA, "plate4.csv", instrument_id=other)  # wrong instrument
    await wire.upload(b"x" * 2000, "big.csv", instrument_id=reader)  # over max_size_kb
    again = await wire.post(f"/v1/files/{matching['file_id']}/confirm-upload")
    assert again.status == 200  # confirming again does not fire again

    executions = await wire.executions(job["id"])
    inputs = [e["file_ids"] for e in reversed(executions)]
    assert inputs == [[matching["file_id"]], [sdk.file_id], [multipart["file_id"]]]
    first = executions[-1]
    assert first["status"] == "queued"
    assert first["trigger"] == {
        "category": "file_uploaded",
        "trigger_id": job["trigger"]["id"],
        "file_id": matching["file_id"],
        "source_execution_id": None,
        "scheduled_for": None,
    }
    assert len(await wire.executions(any_instrument["id"])) == 1

    # Archived jobs and removed triggers never fire.
    await wire.ok("PATCH", f"/v1/jobs/{job['id']}", json={"archived": True})
    await wire.ok("PATCH", f"/v1/jobs/{any_instrument['id']}", json={"trigger_enabled": False})
    await wire.upload(DATA, "plate5.csv", instrument_id=reader)
    await wire.upload(DATA, "more.txt", instrument_id=reader)
    assert len(await wire.executions(job["id"])) == 3
    assert len(await wire.executions(any_instrument["id"])) == 1


async def test_a_jobs_own_uploads_never_trigger_it_again(wire: Wire, paused: LocalServer) -> None:
    ping = await wire.create_job(
        "ping",
        trigger_enabled=True,
        trigger_category="file_uploaded",
        trigger_conditions={"file_name_pattern": "*.csv"},
    )
    pong = await wire.create_job(
        "pong",
        trigger_enabled=True,
        trigger_category="file_uploaded",
        trigger_conditions={"file_name_pattern": "*.csv"},
    )
    # An execution of ping uploads a CSV: pong fires, ping does not.
    run = await wire.ok("POST", "/v1/job-executions", json={"job_id": ping["id"]})
    await wire.upload(DATA, "out.csv", job_execution_id=run["job_execution_id"])
    assert await wire.executions(ping["id"]) == [await _off_platform(wire, run)]
    (pong_run,) = await wire.executions(pong["id"])
    # The execution pong's trigger queued carries the chain [ping]: what it uploads triggers
    # neither ping nor pong. Its key is bound to it; the file names only an instrument.
    _running(paused, pong_run["job_execution_id"])
    key = paused.create_key("read,write", job_execution_id=pong_run["job_execution_id"])
    reader = paused.create_instrument("reader")
    await wire.upload(DATA, "pong-out.csv", key=key, instrument_id=reader)
    assert len(await wire.executions(ping["id"])) == 1
    assert len(await wire.executions(pong["id"])) == 1


async def _off_platform(wire: Wire, started: dict[str, object]) -> object:
    return await wire.ok("GET", f"/v1/job-executions/{started['job_execution_id']}")


def _running(server: LocalServer, execution_id: str) -> None:
    """Mark a queued execution running, as the runner would (this server starts none)."""
    with sqlite3.connect(server.data_dir.db_path) as conn:
        conn.execute("UPDATE job_executions SET status = 'running' WHERE id = ?", (execution_id,))


async def test_job_completed_runs_on_the_source_executions_outputs(wire: Wire) -> None:
    source = await wire.create_job("source")
    on_done = await wire.create_job(
        "on-done",
        trigger_enabled=True,
        trigger_category="job_completed",
        trigger_conditions={"source_job_id": source["id"]},
    )
    on_fail = await wire.create_job(
        "on-fail",
        trigger_enabled=True,
        trigger_category="job_completed",
        trigger_conditions={"source_job_id": source["id"], "statuses": ["failed"]},
    )
    run = await wire.ok("POST", "/v1/job-executions", json={"job_id": source["id"]})
    run_id = run["job_execution_id"]
    outputs = [
        (await wire.upload(DATA, f"out{i}.csv", job_execution_id=run_id))["file_id"]
        for i in range(2)
    ]
    await wire.ok("PATCH", f"/v1/job-executions/{run_id}", json={"status": "completed"})
    (chained,) = await wire.executions(on_done["id"])
    assert chained["file_ids"] == outputs
    assert chained["trigger"]["category"] == "job_completed"
    assert chained["trigger"]["source_execution_id"] == run_id
    assert await wire.executions(on_fail["id"]) == []
    failing = await wire.ok("POST", "/v1/job-executions", json={"job_id": source["id"]})
    await wire.ok(
        "PATCH", f"/v1/job-executions/{failing['job_execution_id']}", json={"status": "failed"}
    )
    assert len(await wire.executions(on_fail["id"])) == 1
    assert len(await wire.executions(on_done["id"])) == 1


async def test_schedules_fire_from_the_injected_clock(
    wire: Wire, paused: LocalServer, clock: FakeClock
) -> None:
    clock.now = datetime.fromisoformat("2025-06-02T10:02:00+00:00").timestamp()
    job = await wire.create_job(
        "every-5",
        trigger_enabled=True,
        trigger_category="schedule",
        trigger_conditions={"cron": "*/5 * * * *", "timezone": "UTC"},
    )
    await paused.run_schedules()
    assert await wire.executions(job["id"]) == []  # not due yet
    clock.advance(3 * 60)  # 10:05
    await paused.run_schedules()
    await paused.run_schedules()  # fires once per due time, whoever checks
    (first,) = await wire.executions(job["id"])
    assert first["trigger"]["scheduled_for"] == "2025-06-02T10:05:00.000000Z"
    clock.advance(60 * 60)  # 11:05: twelve due times passed while nobody checked
    started = await paused.run_schedules()
    runs = await wire.executions(job["id"])
    assert [r["job_execution_id"] for r in runs[:1]] == started
    assert len(runs) == 2  # missed times collapse into one run, for the latest
    assert runs[0]["trigger"]["scheduled_for"] == "2025-06-02T11:05:00.000000Z"


async def test_restart_fails_unfinished_executions(tmp_path: Path, clock: FakeClock) -> None:
    data_dir = tmp_path / "data"
    async with (
        LocalServer(data_dir, clock=clock, max_concurrent_executions=0) as first,
        aiohttp.ClientSession() as session,
    ):
        wire = Wire(session, first)
        job = await wire.create_job("queued-at-stop")
        queued = await wire.ok("POST", f"/v1/jobs/{job['id']}/runs")
        crashed = await wire.ok("POST", f"/v1/jobs/{job['id']}/runs")
        off = await wire.ok("POST", "/v1/job-executions", json={"job_id": job["id"]})
    # A clean stop fails what it leaves behind, saying why.
    # Then a crash is simulated: an execution left running in the database.
    with sqlite3.connect(data_dir / "labric.db") as conn:
        conn.execute(
            "UPDATE job_executions SET status = 'running', logs = 'partial output' WHERE id = ?",
            (crashed["job_execution_id"],),
        )
    async with (
        LocalServer(data_dir, clock=clock, max_concurrent_executions=0) as second,
        aiohttp.ClientSession() as session,
    ):
        wire = Wire(session, second)
        stopped = await wire.ok("GET", f"/v1/job-executions/{queued['job_execution_id']}/logs")
        assert stopped["status"] == "failed"
        assert "[labric] The server stopped before this execution finished" in stopped["text"]
        restarted = await wire.ok("GET", f"/v1/job-executions/{crashed['job_execution_id']}/logs")
        assert restarted["status"] == "failed"
        assert restarted["text"].startswith("partial output\n[labric] The server restarted")
        # Off-platform executions belong to their scripts, not to the server: left running.
        still = await wire.ok("GET", f"/v1/job-executions/{off['job_execution_id']}")
        assert still["status"] == "running"

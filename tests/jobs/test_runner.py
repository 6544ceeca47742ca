"""Platform executions: real job scripts run as subprocesses by the local server.

Each script starts a Python interpreter (and most import labric), so the scripts of one test run
concurrently where the test allows it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric.errors import AuthenticationError
from labric.models.jobs import ExecutionStatus, JobExecution
from labric.server import LocalServer

from ._support import FakeClock, script

SANDBOX = script(
    """
    import os
    import labric
    from labric import Labric
    from labric.job import JobContext

    ctx = JobContext.from_env()
    print("package:", labric.__file__)
    print("cwd:", os.getcwd())
    print("parameters:", sorted(ctx.parameters.items()))
    for f in ctx.files:
        print("input:", f.id, f.path.parent == ctx.file_dir, f.path.read_text().strip())
    print("key:", os.environ["LABRIC_API_KEY"])
    print("inherited:", "LABRIC_STRICT_MODELS" in os.environ)
    with Labric() as client:  # no arguments inside a job
        summary = client.files.upload(b"rows=1\\n", name="summary.txt")
        print("summary:", summary.file_id)
    """
)

FAILING = script(
    """
    def parse():
        raise ValueError("boom: the third column is missing")

    print("parsing")
    parse()
    """
)

SLOW = script(
    """
    import subprocess, sys, time
    # A child of its own, which must die with the job when the time limit kills it.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("started", flush=True)
    time.sleep(60)
    """
)

BLOCKING = script(
    """
    from labric.job import JobContext

    p = JobContext.from_env().parameters
    if "started" in p:
        with open(p["started"], "w") as signal:  # a FIFO: returns once the test reads it
            signal.write("running")
    if "release" in p:
        with open(p["release"]) as gate:  # a FIFO: blocks until the test writes to it
            gate.read()
    print("done")
    """
)


async def fifo_read(path: Path) -> str:
    """Read a FIFO a job writes to; on a timeout, unblock the waiting thread before failing."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(path.read_text), 30)
    except TimeoutError:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # the reader sees EOF
        raise


async def fifo_write(path: Path, text: str) -> None:
    """Write to a FIFO a job reads; on a timeout, unblock the waiting thread before failing."""
    try:
        await asyncio.wait_for(asyncio.to_thread(path.write_text, text), 30)
    except TimeoutError:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # the writer can open and finish
        raise


def line(logs: str, prefix: str) -> str:
    found = [x for x in logs.splitlines() if x.startswith(prefix)]
    assert found, f"no line {prefix!r} in:\n{logs}"
    return found[0][len(prefix) :].strip()


async def test_scripts_run_in_their_sandbox_and_end_as_their_exit_status(
    runner: LocalServer, rclient: AsyncLabric
) -> None:
    reader = runner.create_instrument("reader")
    data = await rclient.files.upload(b"well,value\nA1,1\n", name="in.csv", instrument_id=reader)
    sandbox = await rclient.jobs.create(
        name="sandbox",
        code=SANDBOX,
        parameter_definitions=[
            {"widget_type": "text", "parameter_name": "label", "default": "plate"},
            {"widget_type": "slider", "parameter_name": "gain", "min": 0, "max": 10},
        ],
    )
    failing = await rclient.jobs.create(name="failing", code=FAILING)
    slow = await rclient.jobs.create(name="slow", code=SLOW)
    runs = [
        await rclient.jobs.run(sandbox.id, file_ids=[data.file_id], parameters={"gain": 2}),
        await rclient.jobs.run(failing.id),
        await rclient.jobs.run(slow.id, timeout_seconds=2),
    ]
    ok, failed, timed_out = await asyncio.gather(
        *(rclient.jobs.wait(r.id, timeout=60) for r in runs)
    )

    assert ok.status is ExecutionStatus.COMPLETED
    assert ok.exit_code == 0
    logs = (await rclient.jobs.executions.logs(ok.id)).text
    assert Path(line(logs, "package:")) == Path(__import__("labric").__file__)
    assert Path(line(logs, "cwd:")).name == "work"
    assert line(logs, "parameters:") == "[('gain', 2), ('label', 'plate')]"
    assert line(logs, "input:") == f"{data.file_id} True well,value"
    assert line(logs, "inherited:") == "False"  # a minimal environment, not the server's
    summary = await rclient.files.get(line(logs, "summary:"))
    assert summary.job_execution_id == ok.id  # uploads default to the running execution
    assert summary.source_type == "job"

    # The execution's key stopped working when it ended.
    key = line(logs, "key:")
    async with AsyncLabric(key, base_url=runner.base_url, max_retries=0) as expired:
        with pytest.raises(AuthenticationError, match="expired when its job execution ended"):
            await expired.files.list()

    assert failed.status is ExecutionStatus.FAILED
    assert failed.exit_code == 1
    failed_logs = (await rclient.jobs.executions.logs(failed.id)).text
    assert failed_logs.startswith("parsing\nTraceback (most recent call last):")
    assert 'in parse\n    raise ValueError("boom: the third column is missing")' in failed_logs
    assert failed_logs.endswith(
        "ValueError: boom: the third column is missing\n[labric] The process exited with status 1\n"
    )

    assert timed_out.status is ExecutionStatus.FAILED
    slow_logs = (await rclient.jobs.executions.logs(timed_out.id)).text
    assert slow_logs.startswith("started\n")
    assert "[labric] The execution exceeded its time limit of 2 s and was stopped" in slow_logs
    assert "kept its output open" not in slow_logs  # the grandchild died with the group


async def test_concurrency_limit_queue_order_and_stopping(tmp_path: Path, clock: FakeClock) -> None:
    fifos = {name: tmp_path / name for name in ("a-started", "a-release", "c-started", "c-gate")}
    for fifo in fifos.values():
        os.mkfifo(fifo)
    async with (
        LocalServer(tmp_path / "one", clock=clock, max_concurrent_executions=1) as server,
        AsyncLabric(server.admin_key, base_url=server.base_url) as client,
    ):
        job = await client.jobs.create(name="blocking", code=BLOCKING)
        a = await client.jobs.run(
            job.id,
            parameters={"started": str(fifos["a-started"]), "release": str(fifos["a-release"])},
        )
        b = await client.jobs.run(job.id)
        assert await fifo_read(fifos["a-started"]) == "running"
        assert (await client.jobs.executions.get(a.id)).status is ExecutionStatus.RUNNING
        assert (await client.jobs.executions.get(b.id)).status is ExecutionStatus.QUEUED
        await fifo_write(fifos["a-release"], "go")
        a_done, b_done = await asyncio.gather(
            client.jobs.wait(a.id, timeout=60), client.jobs.wait(b.id, timeout=60)
        )
        assert a_done.status is ExecutionStatus.COMPLETED
        assert b_done.status is ExecutionStatus.COMPLETED
        assert _at(b_done.started_at) >= _at(a_done.completed_at)  # B waited for A's slot

        # Stopping the server kills what runs and fails what waits, saying why.
        c = await client.jobs.run(
            job.id,
            parameters={"started": str(fifos["c-started"]), "release": str(fifos["c-gate"])},
        )
        d = await client.jobs.run(job.id)
        assert await fifo_read(fifos["c-started"]) == "running"
        await server.stop()
    async with (
        LocalServer(tmp_path / "one", clock=clock, max_concurrent_executions=0) as again,
        AsyncLabric(again.admin_key, base_url=again.base_url) as client,
    ):
        for stopped in (c, d):
            logs = await client.jobs.executions.logs(stopped.id)
            assert logs.status is ExecutionStatus.FAILED
            assert logs.text.endswith(
                "[labric] The server stopped before this execution finished; it was stopped "
                "and marked failed\n"
            )


def _at(value: datetime | None) -> datetime:
    assert value is not None
    return value


async def test_job_completed_chains_on_the_outputs(rclient: AsyncLabric) -> None:
    source = await rclient.jobs.create(
        name="produce",
        code=script(
            """
            from labric import Labric
            with Labric() as client:
                client.files.upload(b"42", name="result.txt")
            """
        ),
    )
    consumer = await rclient.jobs.create(
        name="consume",
        code=script(
            """
            from labric.job import JobContext
            for f in JobContext.from_env().files:
                print("got", f.path.name, f.path.read_text())
            """
        ),
        trigger_enabled=True,
        trigger_category="job_completed",
        trigger_conditions={"source_job_id": source.id},
    )
    produced = await rclient.jobs.wait((await rclient.jobs.run(source.id)).id, timeout=60)
    assert produced.status is ExecutionStatus.COMPLETED
    (chained,) = await rclient.jobs.executions.list(job_id=consumer.id)
    assert chained.trigger is not None
    assert chained.trigger.source_execution_id == produced.id
    (output,) = [f async for f in rclient.files.list() if f.job_execution_id == produced.id]
    assert chained.file_ids == [output.file_id]
    finished = await rclient.jobs.wait(chained.id, timeout=60)
    assert finished.status is ExecutionStatus.COMPLETED
    assert (await rclient.jobs.executions.logs(chained.id)).text == "got result.txt 42\n"


async def test_a_schedule_runs_the_job_when_the_clock_says(
    runner: LocalServer, rclient: AsyncLabric, clock: FakeClock
) -> None:
    clock.now = datetime.fromisoformat("2025-06-02T05:59:00+02:00").timestamp()
    job = await rclient.jobs.create(
        name="morning",
        code=script(
            """
            from labric.job import JobContext
            print("good morning", JobContext.from_env().job_id)
            """
        ),
        trigger_enabled=True,
        trigger_category="schedule",
        trigger_conditions={"cron": "0 6 * * mon-fri", "timezone": "Europe/Berlin"},
    )
    await runner.run_schedules()
    assert list(await rclient.jobs.executions.list(job_id=job.id)) == []
    clock.advance(60)  # 06:00 in Berlin, a Monday
    await runner.run_schedules()  # or the server's own check got there first
    (execution,) = await rclient.jobs.executions.list(job_id=job.id)
    assert execution.trigger is not None
    assert execution.trigger.scheduled_for == datetime.fromisoformat("2025-06-02T04:00:00+00:00")
    finished: JobExecution = await rclient.jobs.wait(execution.id, timeout=60)
    assert finished.status is ExecutionStatus.COMPLETED
    assert (await rclient.jobs.executions.logs(execution.id)).text == f"good morning {job.id}\n"

"""``labric jobs ls|run|logs`` against the local server (which runs jobs as subprocesses)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labric import Labric
from labric.models import Job

from ._support import call

JOB_KEYS = {
    "id",
    "name",
    "archived",
    "publish_status",
    "description",
    "trigger",
    "parameter_definitions",
    "script_version",
    "timeout_seconds",
    "created_at",
    "updated_at",
    "code",
}
EXECUTION_KEYS = {
    "job_execution_id",
    "job_id",
    "job_name",
    "status",
    "started_at",
    "completed_at",
    "created_at",
    "off_platform",
    "script_version",
    "exit_code",
    "file_ids",
    "parameters",
    "trigger",
}

GREET = """
from labric.job import JobContext

ctx = JobContext.from_env()
print(f"hello {ctx.parameters['who']} with {len(ctx.files)} file(s)")
"""
FAIL = "import sys\nprint('about to fail')\nsys.exit(3)\n"


@pytest.fixture
def jobs(env: dict[str, str]) -> dict[str, Job]:
    with Labric() as client:
        greet = client.jobs.create(
            name="greet",
            code=GREET,
            description="Greets",
            parameter_definitions=[
                {"widget_type": "text", "parameter_name": "who", "default": "world"}
            ],
        )
        fail = client.jobs.create(name="fail", code=FAIL)
    return {"greet": greet, "fail": fail}


def test_ls(jobs: dict[str, Job], capsys: pytest.CaptureFixture[str]) -> None:
    done = call(capsys, "jobs", "ls", "--json")
    assert done.code == 0, done.err
    listed = done.json()
    assert all(set(j) == JOB_KEYS for j in listed)
    assert {j["name"]: j["id"] for j in listed} == {n: j.id for n, j in jobs.items()}

    human = call(capsys, "jobs", "ls")
    header, *rows = human.out.splitlines()
    assert header.split() == ["ID", "NAME", "TRIGGER", "VERSION", "UPDATED"]
    assert sorted(row.split()[1] for row in rows) == ["fail", "greet"]


def test_run_wait_by_name_with_params_and_files(
    jobs: dict[str, Job], capsys: pytest.CaptureFixture[str]
) -> None:
    with Labric() as client:
        upload = client.files.upload(b"a,b\n", name="in.csv")
    done = call(
        capsys,
        "jobs",
        "run",
        "greet",
        "--param",
        "who=lab",
        "--file",
        upload.file_id,
        "--wait",
        "--json",
    )
    assert done.code == 0, done.err
    execution = done.json()
    assert set(execution) == EXECUTION_KEYS
    assert execution["status"] == "completed"
    assert execution["exit_code"] == 0
    assert execution["job_id"] == jobs["greet"].id
    assert execution["parameters"] == {"who": "lab"}
    assert execution["file_ids"] == [upload.file_id]

    logs = call(capsys, "jobs", "logs", execution["job_execution_id"])
    assert logs.code == 0
    assert "hello lab with 1 file(s)" in logs.out
    as_json = call(capsys, "jobs", "logs", execution["job_execution_id"], "--json").json()
    assert set(as_json) == {"job_execution_id", "text", "truncated", "status"}
    assert as_json["text"] == logs.out
    assert as_json["status"] == "completed"


def test_run_by_id_prints_the_final_status(
    jobs: dict[str, Job], capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "jobs", "run", jobs["greet"].id, "--wait")
    assert done.code == 0, done.err
    execution_id, name, status, *rest = done.out.split()
    assert (name, status, rest) == ("greet", "completed", ["exit", "code", "0"])
    with Labric() as client:
        assert client.jobs.executions.get(execution_id).status == "completed"


def test_param_values_follow_the_jobs_definitions(
    jobs: dict[str, Job], capsys: pytest.CaptureFixture[str]
) -> None:
    # "who" is a text parameter: 5 stays the text "5" (JSON would make it a number, refused).
    done = call(capsys, "jobs", "run", jobs["greet"].id, "--param", "who=5", "--wait", "--json")
    assert done.code == 0, done.err
    assert done.json()["parameters"] == {"who": "5"}
    # A job without definitions takes any JSON: numbers and objects parse, the rest is text.
    done = call(capsys, "jobs", "run", "fail", "--param", "n=5", "--param", "tag=x y", "--json")
    assert done.code == 0, done.err
    assert done.json()["parameters"] == {"n": 5, "tag": "x y"}


def test_a_failed_run_exits_non_zero(
    jobs: dict[str, Job], capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "jobs", "run", "fail", "--wait")
    assert done.code == 1
    execution_id = done.out.split()[0]
    assert done.out.split()[1:] == ["fail", "failed", "exit", "code", "3"]
    assert done.err == (
        f"labric: error: job execution {execution_id} failed; "
        f"see its output with: labric jobs logs {execution_id}\n"
    )
    logs = call(capsys, "jobs", "logs", execution_id)
    assert "about to fail" in logs.out


def test_run_without_wait_returns_at_once(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The job cannot finish before the test lets it: it blocks opening a FIFO for reading until
    # the test opens it for writing, which happens only after the command has returned.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    with Labric() as client:
        gated = client.jobs.create(
            name="gated",
            code=f"print(open({str(gate)!r}).read())\n",
            timeout_seconds=120,  # bounds a test that fails before it opens the gate
        )
    done = call(capsys, "jobs", "run", gated.id, "--json")
    assert done.code == 0, done.err
    execution = done.json()
    assert execution["status"] in ("queued", "running")
    with Labric() as client:
        execution_id = execution["job_execution_id"]
        assert client.jobs.executions.get(execution_id).status in ("queued", "running")
        with open(gate, "w") as release:  # blocks until the job has opened its end
            release.write("released")
        finished = client.jobs.wait(execution_id)
        assert finished.status == "completed"
        assert "released" in client.jobs.executions.logs(execution_id).text

"""``labric jobs ls|run|runs|logs``: the organisation's jobs, running one, its runs, their output.

``--json`` shapes (new keys may be added):

``jobs ls``
    an array of job objects with the API's fields: ``id``, ``name``, ``archived``,
    ``publish_status``, ``description``, ``trigger``, ``parameter_definitions``,
    ``script_version``, ``timeout_seconds``, ``created_at``, ``updated_at``, ``code`` (null in
    listings).
``jobs run``
    the execution object: ``job_execution_id``, ``job_id``, ``job_name``, ``status``,
    ``started_at``, ``completed_at``, ``created_at``, ``off_platform``, ``script_version``,
    ``exit_code``, ``file_ids``, ``parameters``, ``trigger``; with ``--wait``, as it ended.
``jobs runs``
    an array of execution objects (as for ``jobs run``), newest first.
``jobs logs``
    ``{"job_execution_id", "text", "truncated", "status"}``.

``jobs run --wait`` exits 1 when the execution failed (the JSON, if asked for, is still
printed); interrupting the wait leaves the execution running on the platform.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from labric.cli._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    add_common,
    emit_json,
    parse_value,
    positive_int,
    print_table,
    printable,
    run_with_client,
    to_json,
)
from labric.models.jobs import ExecutionLogs, ExecutionStatus, Job, JobExecution

if TYPE_CHECKING:
    from labric._client import AsyncLabric

__all__ = ["add_jobs"]


def add_jobs(commands: Any) -> None:
    """Register ``labric jobs`` and its subcommands."""
    parser = commands.add_parser(
        "jobs",
        help="list jobs, run one, list its runs, read a run's logs",
        description="Jobs: scripts the platform runs.",
    )
    sub = parser.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)

    ls = sub.add_parser(
        "ls", help="list jobs, newest first", description="List jobs, newest first."
    )
    ls.add_argument("--archived", action="store_true", help="include archived jobs")
    add_common(ls, json_help="print an array of job objects")
    ls.set_defaults(func=_ls)

    run = sub.add_parser(
        "run",
        help="run a job now",
        description="Run a job's current script on the platform. With --wait, wait for it to "
        "end, print its final status and exit 1 if it failed. ",
    )
    run.add_argument("job", metavar="JOB", help="the job's name or id")
    run.add_argument(
        "--file",
        dest="file_ids",
        action="append",
        default=[],
        metavar="FILE_ID",
        help="an input file (repeatable, handed to the script in order)",
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value (repeatable; JSON when it parses, else text)",
    )
    run.add_argument(
        "--timeout", type=positive_int, metavar="SECONDS", help="time limit of this run"
    )
    run.add_argument("--wait", action="store_true", help="wait for the run to end")
    add_common(run, json_help="print the execution object")
    run.set_defaults(func=_run)

    runs = sub.add_parser(
        "runs",
        help="list a job's runs, newest first",
        description="List the runs (executions) of one job, newest first: id, status, exit "
        "code, start and end.",
    )
    runs.add_argument("job", metavar="JOB", help="the job's name or id")
    runs.add_argument(
        "--status", metavar="STATUS", help="only runs in this state: queued, running, ..."
    )
    runs.add_argument("--limit", type=positive_int, metavar="N", help="list at most N runs")
    add_common(runs, json_help="print an array of execution objects")
    runs.set_defaults(func=_runs)

    logs = sub.add_parser(
        "logs", help="print a run's captured output", description="Print a run's captured output."
    )
    logs.add_argument("execution_id", metavar="EXECUTION_ID")
    logs.add_argument(
        "--raw",
        action="store_true",
        help="print the output exactly as captured, control sequences included (for a file or a "
        "pipe; by default they are shown escaped, such as \\x1b)",
    )
    add_common(logs, json_help="print the logs object")
    logs.set_defaults(func=_logs)


def _ls(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> list[Job]:
        return [j async for j in client.jobs.list(archived=True if args.archived else None)]

    jobs = run_with_client(work)
    if args.json:
        emit_json(to_json(jobs))
        return EXIT_OK
    print_table(
        ["ID", "NAME", "TRIGGER", "VERSION", "UPDATED"],
        (
            [
                j.id,
                j.name + (" (archived)" if j.archived else ""),
                _text(j.trigger.category) if j.trigger else "",
                j.script_version,
                j.updated_at.strftime("%Y-%m-%d %H:%M:%S") if j.updated_at else "",
            ]
            for j in jobs
        ),
    )
    return EXIT_OK


def _text(value: Any) -> str:
    """An open enum's value (or an unknown value kept as text)."""
    return str(getattr(value, "value", value))


#: Widgets whose values are text: ``--param name=5`` gives them ``"5"``, not the number 5.
_TEXT_WIDGETS = frozenset({"text", "combobox", "date"})


def _parameters(items: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` items as written (checked for shape; typed once the job is known)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CLIError(f"--param takes NAME=VALUE, got {item!r}", code=EXIT_USAGE)
        out[name] = value
    return out


def _typed(raw: dict[str, str], job: Job | None) -> dict[str, Any]:
    """Each value as JSON when it parses, except for a parameter the job defines as text."""
    widgets = {
        d.parameter_name: _text(d.widget_type)
        for d in ((job.parameter_definitions if job else None) or [])
    }
    return {
        name: value if widgets.get(name) in _TEXT_WIDGETS else parse_value(value)
        for name, value in raw.items()
    }


def _run(args: argparse.Namespace) -> int:
    raw = _parameters(args.param)

    async def work(client: AsyncLabric) -> JobExecution:
        job = await _job(client, args.job)
        job_id = job.id if job else args.job
        execution = await client.jobs.run(
            job_id,
            file_ids=args.file_ids,
            parameters=_typed(raw, job),
            timeout_seconds=args.timeout,
        )
        if not args.wait:
            return execution
        args.interrupt_hint = (
            f"execution {execution.job_execution_id} goes on running; "
            f"read its output with: labric jobs logs {execution.job_execution_id}"
        )
        return await client.jobs.wait(execution.job_execution_id)

    execution = run_with_client(work)
    status = _text(execution.status)
    if args.json:
        emit_json(to_json(execution))
    else:
        line = printable(f"{execution.job_execution_id}  {execution.job_name}  {status}")
        if execution.exit_code is not None:
            line += f"  exit code {execution.exit_code}"
        sys.stdout.write(line + "\n")
    if args.wait and execution.status != ExecutionStatus.COMPLETED:
        sys.stderr.write(
            f"labric: error: job execution {printable(execution.job_execution_id)} "
            f"{printable(status)}; see its output with: labric jobs logs "
            f"{printable(execution.job_execution_id)}\n"
        )
        return EXIT_FAILURE
    return EXIT_OK


async def _job(client: AsyncLabric, job: str) -> Job | None:
    """The job named ``job``, else the job with that id; None when neither exists (the run's
    own 404 then says so)."""
    from labric.errors import NotFoundError

    # Names are unique in an organisation; anything that names no job is taken as an id.
    named = [j async for j in client.jobs.list(name=job, archived=True)]
    if named:
        return named[0]
    try:
        return await client.jobs.get(job)
    except NotFoundError:
        return None


async def _job_id(client: AsyncLabric, job: str) -> str:
    found = await _job(client, job)
    return found.id if found else job


def _runs(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> list[JobExecution]:
        job_id = await _job_id(client, args.job)
        # An unknown job is a 404 here, rather than an empty list that looks like "no runs yet".
        await client.jobs.get(job_id)
        pager = client.jobs.executions.list(job_id=job_id, status=args.status, limit=args.limit)
        return [e async for e in pager]

    executions = run_with_client(work)
    if args.json:
        emit_json(to_json(executions))
        return EXIT_OK

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""

    print_table(
        ["EXECUTION", "STATUS", "EXIT", "STARTED", "COMPLETED"],
        (
            [
                e.job_execution_id,
                _text(e.status) if e.status is not None else "",
                "" if e.exit_code is None else e.exit_code,
                when(e.started_at or e.created_at),
                when(e.completed_at),
            ]
            for e in executions
        ),
    )
    return EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    async def work(client: AsyncLabric) -> ExecutionLogs:
        return await client.jobs.executions.logs(args.execution_id)

    logs = run_with_client(work)
    if args.json:
        emit_json(to_json(logs))
        return EXIT_OK
    # The output is the job's, hence untrusted: escaped unless --raw asks for it as written.
    text = logs.text if args.raw else printable(logs.text, text=True)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    if logs.truncated:
        sys.stderr.write("labric: note: the middle of the output was left out (too long)\n")
    return EXIT_OK

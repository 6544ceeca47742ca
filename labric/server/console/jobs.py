"""Jobs: their triggers and runs, one run's log (followed live while it runs), and running a job
on demand, the console's one write action (a form post with the session's CSRF token)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from labric.server.console.html import el, fragment
from labric.server.console.layout import (
    PREFIX,
    definition_list,
    duration,
    error_page,
    link,
    page,
    pager,
    table,
    url,
)
from labric.server.console.session import SESSION, csrf_ok, require_session, security_headers
from labric.server.core import records
from labric.server.core.db import from_iso
from labric.server.core.http import HTTPError, json_response
from labric.server.core.paging import decode_cursor, encode_cursor
from labric.server.core.routing import Pages
from labric.server.core.state import STATE, ServerState
from labric.server.jobs import store
from labric.server.jobs.routes import queue_run

__all__ = ["PAGES", "run_rows"]

PAGES = Pages()

PAGE_SIZE = 50
#: Statuses after which a run's log no longer changes.
FINISHED = frozenset({"completed", "failed"})


def _duration(row: store.ExecutionRecord, now: float) -> str:
    if row.started_at is None:
        return ""
    end = from_iso(row.completed_at) if row.completed_at else now
    return duration(max(0.0, end - from_iso(row.started_at)))


def _status(status: str) -> Any:
    return el("span", status, class_=f"status status-{status}", data_status=status)


def run_rows(rows: list[store.ExecutionRecord], now: float) -> list[list[Any]]:
    """Table rows for runs: id, job, status, created, duration."""
    return [
        [
            link(row.id, f"{PREFIX}/runs/{quote(row.id)}"),
            link(row.job_name, f"{PREFIX}/jobs/{quote(row.job_id)}"),
            _status(row.status),
            row.created_at,
            _duration(row, now),
        ]
        for row in rows
    ]


RUN_HEADERS = ("Run", "Job", "Status", "Created", "Duration")


def _trigger(job: store.JobRecord) -> Any:
    trigger = job.trigger
    if trigger is None:
        return "on demand only"
    parts = [trigger.category]
    if trigger.instrument_name or trigger.instrument_id:
        parts.append(f"instrument {trigger.instrument_name or trigger.instrument_id}")
    if trigger.conditions:
        parts.append(json.dumps(trigger.conditions, ensure_ascii=False))
    if trigger.next_fire_at:
        parts.append(f"next {trigger.next_fire_at}")
    return " · ".join(parts)


async def _expire(state: ServerState) -> None:
    await state.db.run(records.expire_executions, state.now())


@PAGES.page("GET", PREFIX + "/jobs")
@require_session
async def list_jobs(request: web.Request) -> web.StreamResponse:
    """Jobs with their triggers, and the latest runs of all of them."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    await _expire(state)

    def read(conn: Any) -> tuple[list[store.JobRecord], list[store.ExecutionRecord]]:
        jobs = store.job_list(conn, org_id, name=None, include_archived=True, after=None, limit=500)
        runs = store.execution_list(conn, org_id, job_id=None, status=None, after=None, limit=20)
        return jobs, runs

    jobs, runs = await state.db.run(read)
    now = state.clock()
    return page(
        request,
        "Jobs",
        table(
            ("Job", "Trigger", "Script version", "Status", "Created"),
            [
                [
                    link(job.name, f"{PREFIX}/jobs/{quote(job.id)}"),
                    _trigger(job),
                    str(job.script_version or ""),
                    "archived" if job.archived else job.publish_status,
                    job.created_at,
                ]
                for job in jobs
            ],
            empty="No jobs yet.",
        ),
        el("h2", "Latest runs"),
        table(RUN_HEADERS, run_rows(runs, now), empty="No runs yet."),
        active="jobs",
    )


@PAGES.page("GET", PREFIX + "/jobs/{job_id}")
@require_session
async def job_page(request: web.Request) -> web.StreamResponse:
    """One job: trigger, script, a form to run it, and its runs (newest first, paged)."""
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    job_id = request.match_info["job_id"]
    cursor = request.query.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except HTTPError:
        return error_page(request, 400, "That page link is not valid any more.")
    await _expire(state)

    def read(conn: Any) -> tuple[store.JobRecord | None, list[store.ExecutionRecord]]:
        job = store.job_get(conn, org_id, job_id, with_code=True)
        runs = store.execution_list(
            conn, org_id, job_id=job_id, status=None, after=after, limit=PAGE_SIZE + 1
        )
        return job, runs

    job, runs = await state.db.run(read)
    if job is None:
        return error_page(request, 404, "No such job.")
    more = len(runs) > PAGE_SIZE
    runs = runs[:PAGE_SIZE]
    base = f"{PREFIX}/jobs/{quote(job.id)}"
    following = (
        url(base, cursor=encode_cursor(runs[-1].created_at, runs[-1].rowid)) if more else None
    )
    run_form = el(
        "form",
        el("input", type="hidden", name="csrf", value=request[SESSION].csrf),
        el(
            "label",
            "Parameters (JSON object, optional) ",
            el("textarea", name="parameters", rows="2", cols="60", placeholder="{}"),
        )
        if job.parameter_definitions
        else None,
        el("button", "Run now", type="submit", class_="run"),
        method="post",
        action=base + "/run",
        class_="run-form",
    )
    return page(
        request,
        job.name,
        el("p", job.description) if job.description else None,
        definition_list(
            {
                "Job id": el("code", job.id),
                "Trigger": _trigger(job),
                "Script version": str(job.script_version or "none"),
                "Status": "archived" if job.archived else job.publish_status,
                "Time limit": f"{job.timeout_seconds} s" if job.timeout_seconds else "default",
            }
        ),
        run_form,
        el("h2", "Runs"),
        table(RUN_HEADERS, run_rows(runs, state.clock()), empty="No runs yet."),
        pager(base if cursor else None, following),
        el("h2", "Script"),
        el("pre", job.code or "", class_="code"),
        active="jobs",
    )


@PAGES.page("POST", PREFIX + "/jobs/{job_id}/run")
@require_session
async def run_job(request: web.Request) -> web.StreamResponse:
    """Queue a run of the job (CSRF-checked) and go to its page."""
    state = request.app[STATE]
    session = request[SESSION]
    form = await request.post()
    if not csrf_ok(request, session, form.get("csrf")):
        return error_page(request, 403, "This form did not come from this console; reload it.")
    parameters: dict[str, Any] | None = None
    raw = form.get("parameters")
    if isinstance(raw, str) and raw.strip():
        try:
            parameters = json.loads(raw)
        except ValueError as exc:
            return error_page(request, 400, f"The parameters are not JSON: {exc}")
        if not isinstance(parameters, dict):
            return error_page(request, 400, "The parameters must be a JSON object.")
    try:
        execution = await queue_run(
            state,
            session.org_id,
            request.match_info["job_id"],
            file_ids=[],
            parameters=parameters,
            timeout_seconds=None,
        )
    except HTTPError as exc:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_page(request, exc.status, f"The job cannot run: {detail}")
    return web.Response(status=303, headers={"Location": f"{PREFIX}/runs/{quote(execution.id)}"})


async def _run_and_log(
    request: web.Request,
) -> tuple[store.ExecutionRecord, str, bool] | None:
    state = request.app[STATE]
    org_id = request[SESSION].org_id
    execution_id = request.match_info["execution_id"]

    def read(conn: Any) -> tuple[store.ExecutionRecord | None, tuple[str, bool] | None]:
        records.expire_executions(conn, state.now())
        return (
            store.execution_get(conn, execution_id, org_id),
            store.execution_logs(conn, org_id, execution_id),
        )

    row, logs = await state.db.run(read)
    if row is None or logs is None:
        return None
    text, truncated = logs
    if row.status == "running" and state.jobs is not None:
        live = state.jobs.live_logs(execution_id)
        if live is not None:
            text, truncated = live
    return row, text, truncated


@PAGES.page("GET", PREFIX + "/runs/{execution_id}")
@require_session
async def run_page(request: web.Request) -> web.StreamResponse:
    """One run: status, duration, inputs, and its log (followed while it runs)."""
    found = await _run_and_log(request)
    if found is None:
        return error_page(request, 404, "No such job execution.")
    row, text, truncated = found
    state = request.app[STATE]
    files = row.file_ids or []
    base = f"{PREFIX}/runs/{quote(row.id)}"
    return page(
        request,
        f"Run of {row.job_name}",
        definition_list(
            {
                "Run id": el("code", row.id),
                "Job": link(row.job_name, f"{PREFIX}/jobs/{quote(row.job_id)}"),
                "Status": _status(row.status),
                "Created": row.created_at,
                "Started": row.started_at or "not yet",
                "Completed": row.completed_at or "not yet",
                "Duration": el("span", _duration(row, state.clock()), data_duration=True),
                "Exit code": "" if row.exit_code is None else str(row.exit_code),
                "Off platform": "yes" if row.off_platform else "no",
                "Input files": fragment(
                    [
                        fragment(link(file_id, f"{PREFIX}/files/{quote(file_id)}"), " ")
                        for file_id in files
                    ]
                )
                if files
                else "none",
                "Parameters": el("code", json.dumps(row.parameters or {}, ensure_ascii=False)),
            }
        ),
        el("h2", "Log"),
        el("p", "The log was cut to its first and last parts.", class_="note")
        if truncated
        else None,
        el(
            "pre",
            text,
            id="log",
            class_="log",
            data_follow=base + "/log" if row.status not in FINISHED else None,
        ),
        active="jobs",
    )


@PAGES.page("GET", PREFIX + "/runs/{execution_id}/log")
@require_session
async def run_log(request: web.Request) -> web.StreamResponse:
    """A run's status and log so far, as JSON (what the run page polls while it runs)."""
    found = await _run_and_log(request)
    if found is None:
        return security_headers(json_response({"detail": "No such job execution"}, status=404))
    row, text, truncated = found
    state = request.app[STATE]
    return json_response(
        {
            "status": row.status,
            "finished": row.status in FINISHED,
            "text": text,
            "truncated": truncated,
            "duration": _duration(row, state.clock()),
        }
    )

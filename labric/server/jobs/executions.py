"""Job executions: the hosted off-platform routes, and the local listing, get and logs routes.

Hosted: ``POST /v1/job-executions`` opens an off-platform execution, ``running`` at once, and
``PATCH /v1/job-executions/{id}`` closes it (``completed`` or ``failed``). Closing is terminal:
sending the same status again changes nothing, changing it is refused with 400. With
``timeout_minutes`` the execution fails by itself once the time has passed; that is applied
lazily, whenever executions are read. Closing fires the ``job_completed`` triggers of the job, in
the same transaction; an execution failed by its timeout fires none.

Local: ``GET /v1/job-executions`` (``job_id`` and ``status`` filters, newest first, ``limit`` and
``cursor`` with a ``Link`` to the next page), ``GET /v1/job-executions/{id}`` and
``GET /v1/job-executions/{id}/logs`` answer platform and off-platform executions alike, with what
an execution ran and how it ended. ``GET /v1/job-executions/{id}?wait=N`` holds the answer up to
``N`` seconds (at most :data:`MAX_WAIT_SECONDS`) until the execution has ended, so a client
waiting for one needs no tight polling; a server that ignores ``wait`` just answers at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.db import iso
from labric.server.core.declare import (
    EXECUTION_ID,
    PAGE,
    Body,
    Operation,
    Param,
    Response,
    array,
    integer,
    ref,
    string,
)
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.jobs import executions_wire, firing, store
from labric.server.jobs.routes import execution_json

__all__ = ["DEFAULT_JOB_NAME", "MAX_TIMEOUT_MINUTES", "MAX_WAIT_SECONDS", "register"]

#: The job an execution belongs to when the request names none.
DEFAULT_JOB_NAME = "Off-Platform Manual Job"
#: The longest ``timeout_minutes`` (30 days).
MAX_TIMEOUT_MINUTES = 43200
#: The longest ``wait`` of ``GET /v1/job-executions/{id}``.
MAX_WAIT_SECONDS = 30
_TERMINAL = ("completed", "failed")
_STATUSES = ("queued", "running", "completed", "failed")


ROUTES = Routes(executions_wire.EXECUTIONS)


def hosted_json(row: records.ExecutionRow) -> dict[str, Any]:
    """The hosted OffPlatformJobExecutionSchema."""
    return {
        "job_execution_id": row.id,
        "job_id": row.job_id,
        "job_name": row.job_name,
        "status": row.status,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
    }


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/job-executions",
        scope="write",
        summary="Open a running execution for a script running off the platform",
        body=Body(schema=ref("StartExecutionRequest"), required=False),
        responses=(Response(schema=ref("OffPlatformExecution")),),
        errors={404: "No such job"},
        hosted=True,
    )
)
async def start_execution(request: web.Request) -> web.StreamResponse:
    """``POST /v1/job-executions``: open a running execution for an off-platform script."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    body = await read_json_object(request, optional=True)
    f = Fields(body)
    job_id = f.string("job_id", max_length=128)
    job_name = f.string("job_name", max_length=255)
    timeout = f.integer("timeout_minutes", minimum=1, maximum=MAX_TIMEOUT_MINUTES)
    f.check()
    clock = state.clock()
    now = iso(clock)
    timeout_at = iso(clock + timeout * 60) if timeout is not None else None

    def start(conn: Any) -> records.ExecutionRow:
        if job_id is not None:
            if records.job_by_id(conn, org_id, job_id) is None:
                raise HTTPError(404, f"Job {job_id} not found")
            resolved = job_id
        else:
            name = job_name.strip() if job_name and job_name.strip() else DEFAULT_JOB_NAME
            resolved = records.get_or_create_job(conn, org_id, name, now)
        execution_id = records.insert_execution(
            conn,
            org_id=org_id,
            job_id=resolved,
            status="running",
            off_platform=True,
            now=now,
            timeout_at=timeout_at,
        )
        row = records.execution_get(conn, org_id, execution_id)
        assert row is not None
        return row

    return json_response(hosted_json(await state.db.run(start)))


@ROUTES.route(
    Operation(
        method="PATCH",
        path="/v1/job-executions/{execution_id}",
        scope="write",
        summary="Close an off-platform execution (terminal)",
        params=(EXECUTION_ID,),
        body=Body(schema=ref("CloseExecutionRequest")),
        responses=(Response(schema=ref("OffPlatformExecution")),),
        errors={
            400: "Not an off-platform execution, or already closed with another status",
            404: "No such execution",
        },
        hosted=True,
    )
)
async def close_execution(request: web.Request) -> web.StreamResponse:
    """``PATCH /v1/job-executions/{execution_id}``: close an execution (terminal)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    execution_id = request.match_info["execution_id"]
    body = await read_json_object(request)
    f = Fields(body)
    status = f.string("status", required=True, max_length=32)
    if status is not None and status not in _TERMINAL:
        f.add(["status"], "Input should be 'completed' or 'failed'", "enum")
    f.check()
    assert status is not None
    clock = state.clock()
    now = iso(clock)

    def close(conn: Any) -> tuple[records.ExecutionRow, list[str]]:
        records.expire_executions(conn, now)
        row = records.execution_get(conn, org_id, execution_id)
        if row is None:
            raise HTTPError(404, f"Job execution {execution_id} not found")
        if not row.off_platform:
            raise HTTPError(
                400, "Only executions opened with POST /v1/job-executions can be closed here"
            )
        if row.status == status:
            return row, []
        if row.status != "running":
            raise HTTPError(
                400,
                f"The execution is already {row.status}; a closed execution cannot change status",
            )
        records.finish_execution(conn, execution_id, status, now)
        updated = records.execution_get(conn, org_id, execution_id)
        assert updated is not None
        started = firing.fire_job_completed(
            conn, execution_id, clock=clock, default_timeout=state.settings.job_timeout
        )
        return updated, started

    row, started = await state.db.run(close)
    if state.jobs is not None:
        state.jobs.notify(execution_id)
        if started:
            state.jobs.wake()
    return json_response(hosted_json(row))


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/job-executions",
        scope="read",
        summary="Executions, newest first",
        params=(
            Param(name="job_id", where="query", schema=string(maxLength=128)),
            Param(
                name="status",
                where="query",
                schema=string(enum=[*executions_wire.STATUSES, ""]),
                description="Empty means not given",
            ),
            *PAGE,
        ),
        responses=(Response(schema=array(ref("JobExecution"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
    )
)
async def list_executions(request: web.Request) -> web.StreamResponse:
    """``GET /v1/job-executions``: executions, newest first, by job and status."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    q = Fields(request.query, "query")
    job_id = q.string("job_id", max_length=128) or None
    status = q.string("status", max_length=32) or None
    if status is not None and status not in _STATUSES:
        q.add(["status"], f"Input should be one of {', '.join(_STATUSES)}", "enum")
    wanted = listing(state, q)
    now = state.now()
    await state.db.run(records.expire_executions, now)

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.execution_list(
                conn, org_id, job_id=job_id, status=status, after=after, limit=n
            )
        )
        return [((row.created_at, row.rowid), execution_json(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/job-executions/{execution_id}",
        scope="read",
        summary="One execution; `wait` holds the answer until it ends",
        params=(
            EXECUTION_ID,
            Param(
                name="wait",
                where="query",
                schema=integer(minimum=0, maximum=30),
                description="Seconds to wait for the execution to end",
            ),
        ),
        responses=(Response(schema=ref("JobExecution")),),
        errors={404: "No such execution"},
    )
)
async def get_execution(request: web.Request) -> web.StreamResponse:
    """``GET /v1/job-executions/{execution_id}``: one execution (``wait`` holds until it ends)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    execution_id = request.match_info["execution_id"]
    q = Fields(request.query, "query")
    wait = q.integer("wait", minimum=0, maximum=MAX_WAIT_SECONDS) or 0
    q.check()

    def get(conn: Any) -> store.ExecutionRecord:
        records.expire_executions(conn, state.now())
        row = store.execution_get(conn, execution_id, org_id)
        if row is None:
            raise HTTPError(404, f"Job execution {execution_id} not found")
        return row

    runner = state.jobs
    if not wait or runner is None:
        return json_response(execution_json(await state.db.run(get)))
    ended = runner.watch(execution_id)  # watch before reading, so an end in between is seen
    try:
        row = await state.db.run(get)
        if row.status not in _TERMINAL and not runner.stopping:
            await asyncio.wait([ended], timeout=wait)
            row = await state.db.run(get)
    finally:
        runner.unwatch(execution_id, ended)
    return json_response(execution_json(row))


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/job-executions/{execution_id}/logs",
        scope="read",
        summary="An execution's captured output (live while running)",
        params=(EXECUTION_ID,),
        responses=(Response(schema=ref("ExecutionLogs")),),
        errors={404: "No such execution"},
    )
)
async def execution_logs(request: web.Request) -> web.StreamResponse:
    """``GET /v1/job-executions/{execution_id}/logs``: captured output (live while running)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    execution_id = request.match_info["execution_id"]

    def read(conn: Any) -> tuple[store.ExecutionRecord, tuple[str, bool]]:
        row = store.execution_get(conn, execution_id, org_id)
        logs = store.execution_logs(conn, org_id, execution_id)
        if row is None or logs is None:
            raise HTTPError(404, f"Job execution {execution_id} not found")
        return row, logs

    row, (text, truncated) = await state.db.run(read)
    if row.status == "running" and state.jobs is not None:
        live = state.jobs.live_logs(execution_id)
        if live is not None:
            text, truncated = live
    return json_response(
        {
            "job_execution_id": row.id,
            "status": row.status,
            "text": text,
            "truncated": truncated,
        }
    )


def register(router: Router) -> None:
    """Add the job-executions routes."""
    router.add(ROUTES)

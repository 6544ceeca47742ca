"""Off-platform job executions: ``POST /v1/job-executions`` and ``PATCH /v1/job-executions/{id}``.

An execution opened here is ``running`` at once. Closing it (``completed`` or ``failed``) is
terminal: sending the same status again changes nothing, changing it is refused with 400. With
``timeout_minutes`` the execution fails by itself once the time has passed; that is applied
lazily, whenever executions are read.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from labric.server import records
from labric.server._http import Fields, HTTPError, json_response, read_json_object
from labric.server.db import iso
from labric.server.routes._common import principal
from labric.server.routing import Router
from labric.server.state import STATE

__all__ = ["DEFAULT_JOB_NAME", "MAX_TIMEOUT_MINUTES", "register"]

#: The job an execution belongs to when the request names none.
DEFAULT_JOB_NAME = "Off-Platform Manual Job"
#: The longest ``timeout_minutes`` (30 days).
MAX_TIMEOUT_MINUTES = 43200
_TERMINAL = ("completed", "failed")


def execution_json(row: records.ExecutionRow) -> dict[str, Any]:
    """The hosted OffPlatformJobExecutionSchema."""
    return {
        "job_execution_id": row.id,
        "job_id": row.job_id,
        "job_name": row.job_name,
        "status": row.status,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
    }


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

    return json_response(execution_json(await state.db.run(start)))


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
    now = state.now()

    def close(conn: Any) -> records.ExecutionRow:
        records.expire_executions(conn, now)
        row = records.execution_get(conn, org_id, execution_id)
        if row is None:
            raise HTTPError(404, f"Job execution {execution_id} not found")
        if not row.off_platform:
            raise HTTPError(
                400, "Only executions opened with POST /v1/job-executions can be closed here"
            )
        if row.status == status:
            return row
        if row.status != "running":
            raise HTTPError(
                400,
                f"The execution is already {row.status}; a closed execution cannot change status",
            )
        records.finish_execution(conn, execution_id, status, now)
        updated = records.execution_get(conn, org_id, execution_id)
        assert updated is not None
        return updated

    return json_response(execution_json(await state.db.run(close)))


def register(router: Router) -> None:
    """Add the job-executions routes."""
    router.api("POST", "/v1/job-executions", start_execution, scope="write")
    router.api("PATCH", "/v1/job-executions/{execution_id}", close_execution, scope="write")

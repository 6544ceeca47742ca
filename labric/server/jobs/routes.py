"""The jobs API: list, create, get, update, and run on demand.

``GET /v1/jobs``, ``POST /v1/jobs`` and ``PATCH /v1/jobs/{id}`` are the hosted routes and answer the
hosted ToolsJobSchema; ``GET /v1/jobs/{id}`` and ``POST /v1/jobs/{id}/runs`` are local additions.
Jobs carry a few local fields too: ``script_version``, ``timeout_seconds``, ``created_at``,
``updated_at``, and (on single-job answers, not in listings) ``code``, the current script.

Update semantics: only the fields sent change (``null`` counts as not sent). ``code`` (a whole new
script) or ``edits`` (applied in order, each ``old_string`` matching the script exactly once) make a
new script version; if any edit fails, nothing is saved. ``trigger_enabled: true`` creates or
replaces the trigger from the trigger fields sent (``trigger_category`` required);
``trigger_enabled: false`` removes it; trigger fields sent without ``trigger_enabled`` change the
existing trigger in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.declare import (
    JOB_ID,
    PAGE,
    QUERY_BOOLEAN,
    Body,
    Operation,
    Param,
    Response,
    array,
    ref,
    string,
)
from labric.server.core.http import (
    DEFAULT_JSON_LIMIT,
    Fields,
    HTTPError,
    invalid,
    json_response,
    read_json_object,
)
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE, ServerState
from labric.server.jobs import store, triggers, wire
from labric.server.jobs.params import resolve_parameters, validate_definitions

__all__ = [
    "MAX_RUN_FILES",
    "MAX_TIMEOUT_SECONDS",
    "execution_json",
    "job_json",
    "queue_run",
    "register",
]

PUBLISH_STATUSES = ("draft", "in_review", "published")
#: The longest time limit a job or run may ask for (a week).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
#: The most input files one run may be given.
MAX_RUN_FILES = 1000
_TRIGGER_FIELDS = ("trigger_category", "trigger_instrument_id", "trigger_conditions")


# -- wire shapes ---------------------------------------------------------------------------


ROUTES = Routes(wire.JOBS)


def job_json(job: store.JobRecord, *, with_code: bool = False) -> dict[str, Any]:
    """A job as the hosted ToolsJobSchema, plus the local fields."""
    trigger = job.trigger
    body: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "description": job.description,
        "archived": job.archived,
        "publish_status": job.publish_status,
        "trigger": None
        if trigger is None
        else {
            "id": trigger.id,
            "category": trigger.category,
            "instrument_id": trigger.instrument_id,
            "instrument_name": trigger.instrument_name,
            "conditions": trigger.conditions,
        },
        "parameter_definitions": job.parameter_definitions,
        "script_version": job.script_version or None,
        "timeout_seconds": job.timeout_seconds,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }
    if with_code:
        body["code"] = job.code
    return body


def execution_json(row: store.ExecutionRecord) -> dict[str, Any]:
    """An execution as the local listing and get routes answer it.

    The hosted OffPlatformJobExecutionSchema's fields, plus what the execution ran and how it
    ended.
    """
    return {
        "job_execution_id": row.id,
        "job_id": row.job_id,
        "job_name": row.job_name,
        "status": row.status,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
        "created_at": row.created_at,
        "off_platform": row.off_platform,
        "script_version": row.script_version,
        "exit_code": row.exit_code,
        "file_ids": row.file_ids or [],
        "parameters": row.parameters or {},
        "trigger": row.trigger_info,
    }


# -- request fields the shared Fields helper does not cover ---------------------------------


def _boolean(f: Fields, body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        f.add([name], "Input should be a valid boolean", "bool_type")
        return None
    return value


def _query_boolean(f: Fields, query: Mapping[str, str], name: str) -> bool | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    f.add([name], "Input should be a valid boolean", "bool_parsing")
    return None


def _object(f: Fields, body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        f.add([name], "Input should be a valid object", "dict_type")
        return None
    return value


def _definitions(f: Fields, name: str = "parameter_definitions") -> list[dict[str, Any]] | None:
    items = f.array(name)
    if items is None:
        return None
    normal, problems = validate_definitions(items)
    for loc, msg in problems:
        f.add([name, *loc], msg)
    return normal


def _category(f: Fields, value: str | None) -> str | None:
    if value is not None and value not in triggers.CATEGORIES:
        f.add(["trigger_category"], f"Input should be one of {', '.join(triggers.CATEGORIES)}")
        return None
    return value


def _conditions(
    f: Fields, category: str | None, conditions: dict[str, Any] | None
) -> dict[str, Any] | None:
    if category is None:
        return conditions
    normal, problems = triggers.validate_conditions(category, conditions)
    for loc, msg in problems:
        f.add(["trigger_conditions", *loc], msg)
    return normal


def _check_trigger_refs(
    conn: Any,
    org_id: str,
    job_id: str | None,
    category: str,
    instrument_id: str | None,
    conditions: dict[str, Any] | None,
) -> None:
    """Check what a trigger refers to (on the database thread)."""
    if instrument_id is not None:
        if category != "file_uploaded":
            raise invalid(
                ["body", "trigger_instrument_id"],
                "trigger_instrument_id applies to file_uploaded triggers only",
            )
        if not records.instrument_exists(conn, org_id, instrument_id):
            raise HTTPError(404, f"Instrument {instrument_id} not found")
    if category == "job_completed":
        source = (conditions or {}).get("source_job_id")
        where: list[str | int] = ["body", "trigger_conditions", "source_job_id"]
        if source == job_id:
            raise invalid(where, "A job cannot be triggered by its own completion")
        if source is None or store.job_get(conn, org_id, source) is None:
            raise invalid(where, f"No job {source} in this organisation")


def _apply_edits(code: str, edits: list[tuple[str, str]]) -> str:
    for index, (old, new) in enumerate(edits):
        where = f"Edit {index + 1} of {len(edits)}"
        first = code.find(old) if old else -1
        if first == -1:
            raise HTTPError(
                400,
                f"{where}: old_string does not occur in the script (it must match exactly once, "
                "whitespace included); nothing was saved",
            )
        if code.find(old, first + 1) != -1:
            raise HTTPError(
                400,
                f"{where}: old_string occurs more than once in the script; include more "
                "surrounding text so it matches exactly once. Nothing was saved",
            )
        code = code[:first] + new + code[first + len(old) :]
    return code


def _edits(f: Fields) -> list[tuple[str, str]] | None:
    items = f.array("edits")
    if items is None:
        return None
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            f.add(["edits", index], "Each edit must be an object", "dict_type")
            continue
        old, new = item.get("old_string"), item.get("new_string")
        if not isinstance(old, str) or not old:
            f.add(["edits", index, "old_string"], "Expected a non-empty string")
        if not isinstance(new, str):
            f.add(["edits", index, "new_string"], "Expected a string ('' deletes)")
        if isinstance(old, str) and old and isinstance(new, str):
            out.append((old, new))
    if not items:
        f.add(["edits"], "Give at least one edit")
    return out


def _unprocessable(prefix: list[str | int], problems: list[triggers.Problem]) -> HTTPError:
    return HTTPError(
        422,
        [{"loc": [*prefix, *loc], "msg": msg, "type": "value_error"} for loc, msg in problems],
    )


def _runner_wake(state: ServerState) -> None:
    if state.jobs is not None:
        state.jobs.wake()


def _not_found(job_id: str) -> HTTPError:
    return HTTPError(404, f"Job {job_id} not found")


def _duplicate(name: str) -> HTTPError:
    return HTTPError(409, f"A job named {name!r} already exists in this organisation")


# -- handlers ------------------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/jobs",
        scope="read",
        summary="Jobs, newest first (archived ones only with archived=true)",
        params=(
            Param(name="name", where="query", schema=string(maxLength=255)),
            Param(
                name="archived",
                where="query",
                schema=QUERY_BOOLEAN,
            ),
            *PAGE,
        ),
        responses=(Response(schema=array(ref("Job"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
        hosted=True,
    )
)
async def list_jobs(request: web.Request) -> web.StreamResponse:
    """``GET /v1/jobs``: jobs, newest first; archived ones only with ``archived=true``."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    q = Fields(request.query, "query")
    name = q.string("name", max_length=255)
    archived = _query_boolean(q, request.query, "archived")
    wanted = listing(state, q)

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.job_list(
                conn, org_id, name=name, include_archived=bool(archived), after=after, limit=n
            )
        )
        return [((row.created_at, row.rowid), job_json(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/jobs",
        scope="write",
        summary="Create a draft job",
        body=Body(schema=ref("CreateJobRequest")),
        responses=(Response(schema=ref("Job")),),
        errors={404: "The trigger's instrument does not exist", 409: "The name is taken"},
        hosted=True,
    )
)
async def create_job(request: web.Request) -> web.StreamResponse:
    """``POST /v1/jobs``: a new draft job (409 when the name is taken)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    body = await read_json_object(request)
    f = Fields(body)
    name = f.string("name", required=True, max_length=255)
    code = f.string("code", required=True, max_length=DEFAULT_JSON_LIMIT)
    description = f.string("description", max_length=10_000)
    enabled = _boolean(f, body, "trigger_enabled")
    category = _category(f, f.string("trigger_category", max_length=64))
    instrument_id = f.string("trigger_instrument_id", max_length=128)
    conditions = _object(f, body, "trigger_conditions")
    definitions = _definitions(f)
    timeout = f.integer("timeout_seconds", minimum=1, maximum=MAX_TIMEOUT_SECONDS)
    if enabled and body.get("trigger_category") is None:
        f.add(["trigger_category"], "trigger_category is required when trigger_enabled is true")
    sent_trigger = [k for k in _TRIGGER_FIELDS if body.get(k) is not None]
    if not enabled and sent_trigger:
        f.add(
            [sent_trigger[0]],
            "Set trigger_enabled to true to create the trigger these fields describe",
        )
    conditions = _conditions(f, category, conditions) if enabled else None
    f.check()
    assert name is not None
    assert code is not None
    clock = state.clock()
    now = state.now()

    def create(conn: Any) -> store.JobRecord:
        if store.job_by_name(conn, org_id, name) is not None:
            raise _duplicate(name)
        job_id = store.job_insert(
            conn,
            org_id=org_id,
            name=name,
            description=description or None,
            code=code,
            parameter_definitions=definitions,
            timeout_seconds=timeout,
            now=now,
        )
        if enabled and category is not None:
            _check_trigger_refs(conn, org_id, job_id, category, instrument_id, conditions)
            store.trigger_set(
                conn,
                job_id=job_id,
                org_id=org_id,
                category=category,
                instrument_id=instrument_id,
                conditions=conditions,
                clock=clock,
                now=now,
            )
        job = store.job_get(conn, org_id, job_id, with_code=True)
        assert job is not None
        return job

    return json_response(job_json(await state.db.run(create), with_code=True))


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/jobs/{job_id}",
        scope="read",
        summary="One job, with its current script",
        params=(JOB_ID,),
        responses=(Response(schema=ref("Job")),),
        errors={404: "No such job"},
    )
)
async def get_job(request: web.Request) -> web.StreamResponse:
    """``GET /v1/jobs/{job_id}``: one job, with its current script."""
    state = request.app[STATE]
    job_id = request.match_info["job_id"]
    job = await state.db.run(
        lambda conn: store.job_get(conn, principal(request).org_id, job_id, with_code=True)
    )
    if job is None:
        raise _not_found(job_id)
    return json_response(job_json(job, with_code=True))


@ROUTES.route(
    Operation(
        method="PATCH",
        path="/v1/jobs/{job_id}",
        scope="write",
        summary="Change the fields sent; new code or edits make a new script version",
        params=(JOB_ID,),
        body=Body(schema=ref("UpdateJobRequest")),
        responses=(Response(schema=ref("Job")),),
        errors={
            400: "An edit does not match the script exactly once; nothing was saved",
            404: "No such job (or trigger instrument)",
            409: "The new name is taken",
        },
        hosted=True,
    )
)
async def update_job(request: web.Request) -> web.StreamResponse:
    """``PATCH /v1/jobs/{job_id}``: change the fields sent (see the module docstring)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    job_id = request.match_info["job_id"]
    body = await read_json_object(request)
    f = Fields(body)
    name = f.string("name", max_length=255)
    if name is not None and not name.strip():
        f.add(["name"], "String should not be empty", "string_too_short")
    description = f.string("description", max_length=10_000)
    code = f.string("code", max_length=DEFAULT_JSON_LIMIT)
    if code is not None and not code.strip():
        f.add(["code"], "String should not be empty", "string_too_short")
    edits = _edits(f)
    if code is not None and edits is not None:
        f.add(["edits"], "Send either code or edits, not both")
    archived = _boolean(f, body, "archived")
    enabled = _boolean(f, body, "trigger_enabled")
    category = _category(f, f.string("trigger_category", max_length=64))
    instrument_id = f.string("trigger_instrument_id", max_length=128)
    conditions = _object(f, body, "trigger_conditions")
    definitions = _definitions(f)
    publish_status = f.string("publish_status", max_length=32)
    if publish_status is not None and publish_status not in PUBLISH_STATUSES:
        f.add(["publish_status"], f"Input should be one of {', '.join(PUBLISH_STATUSES)}", "enum")
    timeout = f.integer("timeout_seconds", minimum=1, maximum=MAX_TIMEOUT_SECONDS)
    if enabled and category is None and body.get("trigger_category") is None:
        f.add(["trigger_category"], "trigger_category is required when trigger_enabled is true")
    if enabled:
        conditions = _conditions(f, category, conditions)
    f.check()
    trigger_sent = any(body.get(k) is not None for k in _TRIGGER_FIELDS)
    clock = state.clock()
    now = state.now()

    def _update_trigger(conn: Any, job: store.JobRecord, *, enabled: bool) -> None:
        if enabled:  # create or replace from the fields sent
            new_category, new_instrument, new_conditions = category, instrument_id, conditions
        else:  # change the existing trigger in place
            if job.trigger is None:
                raise invalid(
                    ["body", "trigger_enabled"],
                    "The job has no trigger; set trigger_enabled to true to create one",
                )
            new_category = category or job.trigger.category
            new_instrument = instrument_id or job.trigger.instrument_id
            merged = body.get("trigger_conditions")
            if merged is None and new_category == job.trigger.category:
                merged = job.trigger.conditions
            normal, problems = triggers.validate_conditions(new_category, merged)
            if problems:
                raise _unprocessable(["body", "trigger_conditions"], problems)
            new_conditions = normal
        assert new_category is not None
        _check_trigger_refs(conn, org_id, job.id, new_category, new_instrument, new_conditions)
        store.trigger_set(
            conn,
            job_id=job.id,
            org_id=org_id,
            category=new_category,
            instrument_id=new_instrument,
            conditions=new_conditions,
            clock=clock,
            now=now,
        )

    def update(conn: Any) -> store.JobRecord:
        job = store.job_get(conn, org_id, job_id, with_code=True)
        if job is None:
            raise _not_found(job_id)
        changes: dict[str, Any] = {}
        if name is not None and name != job.name:
            if store.job_by_name(conn, org_id, name) is not None:
                raise _duplicate(name)
            changes["name"] = name
        if description is not None:
            changes["description"] = description or None
        if archived is not None:
            changes["archived"] = archived
        if publish_status is not None:
            changes["publish_status"] = publish_status
        if definitions is not None:
            changes["parameter_definitions"] = definitions or None
        if timeout is not None:
            changes["timeout_seconds"] = timeout
        new_code = code
        if edits is not None:
            if job.code is None:
                raise HTTPError(400, "This job has no script to edit; send code instead")
            new_code = _apply_edits(job.code, edits)
        if enabled is False:
            store.trigger_delete(conn, job_id)
        elif enabled or trigger_sent:
            _update_trigger(conn, job, enabled=bool(enabled))
        if new_code is not None and new_code != job.code:
            store.script_add(conn, job_id, new_code, now)
        store.job_update(conn, job_id, changes, now)
        updated = store.job_get(conn, org_id, job_id, with_code=True)
        assert updated is not None
        return updated

    return json_response(job_json(await state.db.run(update), with_code=True))


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/jobs/{job_id}/runs",
        scope="write",
        summary="Queue a platform execution of the job's current script",
        params=(JOB_ID,),
        body=Body(schema=ref("RunJobRequest"), required=False),
        responses=(Response(schema=ref("JobExecution")),),
        errors={
            400: "The job is archived or has no script",
            404: "No such job, or an input file does not exist",
        },
    )
)
async def run_job(request: web.Request) -> web.StreamResponse:
    """``POST /v1/jobs/{job_id}/runs``: queue a platform execution of the job's current script."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    job_id = request.match_info["job_id"]
    body = await read_json_object(request, optional=True)
    f = Fields(body)
    file_ids = f.array("file_ids") or []
    if not all(isinstance(i, str) and i for i in file_ids):
        f.add(["file_ids"], "Expected a list of file ids")
    elif len(set(file_ids)) != len(file_ids):
        f.add(["file_ids"], "A file is listed more than once")
    elif len(file_ids) > MAX_RUN_FILES:
        f.add(["file_ids"], f"At most {MAX_RUN_FILES} files per run")
    given = _object(f, body, "parameters")
    timeout = f.integer("timeout_seconds", minimum=1, maximum=MAX_TIMEOUT_SECONDS)
    f.check()
    execution = await queue_run(
        state, org_id, job_id, file_ids=file_ids, parameters=given, timeout_seconds=timeout
    )
    return json_response(execution_json(execution))


async def queue_run(
    state: ServerState,
    org_id: str,
    job_id: str,
    *,
    file_ids: list[str],
    parameters: dict[str, Any] | None,
    timeout_seconds: int | None,
) -> store.ExecutionRecord:
    """Queue a platform execution of a job's current script (``POST .../runs``, the console).

    Raises:
        HTTPError: 404 no such job or input file, 400 archived or without a script, 422 the
            parameters do not fit the job's definitions.
    """
    now = state.now()
    given = parameters

    def run(conn: Any) -> store.ExecutionRecord:
        job = store.job_get(conn, org_id, job_id)
        if job is None:
            raise _not_found(job_id)
        if job.archived:
            raise HTTPError(400, f"Job {job_id} is archived; unarchive it to run it")
        if not job.script_version:
            raise HTTPError(400, f"Job {job_id} has no script; give it code first")
        for file_id in file_ids:
            found = records.file_get(conn, file_id, org_id)
            if found is None or found.status != "confirmed":
                raise HTTPError(404, f"File {file_id} not found")
        parameters, problems = resolve_parameters(job.parameter_definitions, given, manual=True)
        if problems:
            raise _unprocessable(["body", "parameters"], problems)
        execution_id = store.enqueue(
            conn,
            job,
            file_ids=file_ids,
            parameters=parameters,
            trigger_info=None,
            lineage=[],
            timeout_seconds=timeout_seconds or job.timeout_seconds or state.settings.job_timeout,
            now=now,
        )
        row = store.execution_get(conn, execution_id)
        assert row is not None
        return row

    execution = await state.db.run(run)
    _runner_wake(state)
    return execution


def register(router: Router) -> None:
    """Add the jobs routes."""
    router.add(ROUTES)

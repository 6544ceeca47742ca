"""The dataset routes: the hosted ``tools/*``, ``data/write`` and revert, plus local table routes
(the limits are set through :mod:`labric.server.admin.routes`).

==========================================  =====  ============================================
route                                       scope  what
==========================================  =====  ============================================
``GET  /v1/tools/schema``                   read   every table (own first, then platform)
``POST /v1/tools/read``                     read   rows by equality filters; ``limit``/``cursor``
``POST /v1/tools/query``                    read   read-only SQL under the boundary
``POST /v1/data/write``                     write  table writes and series, one transaction
``POST /v1/job-executions/{id}/revert``     write  undo what an execution created (+ masks)
``GET  /v1/datasets``                       read   local: table definitions (as the schema)
``GET  /v1/datasets/{name}``                read   local: one table definition
``POST /v1/datasets``                       write  local: create a table
==========================================  =====  ============================================

Error bodies follow the hosted shapes: ``{"detail": ...}``, 422 ``{"detail": [...]}``, and for
``data/write`` problems 400 ``{"errors": [{"path", "message"}, ...]}``. A write blocked by other
writers for longer than the lock timeout answers 429 with ``Retry-After`` (nothing written).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.declare import (
    EXECUTION_ID,
    OBJECT,
    PAGE,
    Body,
    Operation,
    Response,
    array,
    path_param,
    ref,
)
from labric.server.core.http import (
    Fields,
    HTTPError,
    decode_json,
    invalid,
    json_response,
    read_json_object,
)
from labric.server.core.paging import positioned_listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE, ServerState
from labric.server.datasets import wire
from labric.server.datasets.boundary import QueryError
from labric.server.datasets.define import parse_definition
from labric.server.datasets.reads import ReadError, read_page
from labric.server.datasets.store import (
    Busy,
    DatasetStore,
    Describe,
    OrgDescription,
    OrgMember,
    insert_definition,
)
from labric.server.datasets.validate import MAX_BODY_BYTES, Rejected, TooLarge, check_size
from labric.server.datasets.write import WriteOutcome, apply_write, revert
from labric.server.images import store as images_store

__all__ = [
    "DATASETS",
    "DEFAULT_JOB_NAME",
    "install",
    "parse_body",
    "read_body",
    "recorded_write",
    "register",
]

#: The application's :class:`DatasetStore`.
DATASETS = web.AppKey("labric_datasets", DatasetStore)
#: The job a write's new execution belongs to when the request names none.
DEFAULT_JOB_NAME = "Off-Platform Manual Job"
#: Seconds a 429 asks the client to wait.
RETRY_AFTER = 1
_PARSE_IN_THREAD = 256 * 1024
_USER_NAMESPACE = uuid.UUID("5d1f0c1e-7a52-4c3b-9a0e-3f1f6b2c8d41")


ROUTES = Routes(wire.DATASETS_FAMILY)


def install(app: web.Application, state: ServerState) -> None:
    """Give the application its dataset store (next to the main database), closed on cleanup."""
    store = DatasetStore(state.db.path.parent / "datasets", describe=describer(state))
    app[DATASETS] = store

    async def close(_app: web.Application) -> None:
        await store.close()

    app.on_cleanup.append(close)


def describer(state: ServerState) -> Describe:
    """How the dataset store learns an organisation's name and people from the main database.

    The local server has no user accounts: each organisation has one person, its owner, who
    holds its keys (a stable id derived from the organisation's).
    """

    def lookup(conn: sqlite3.Connection, org_id: str) -> OrgDescription | None:
        row = conn.execute(
            "SELECT name, created_at FROM organisations WHERE id = ?", (org_id,)
        ).fetchone()
        if row is None:
            return None
        owner = OrgMember(
            id=str(uuid.uuid5(_USER_NAMESPACE, org_id)),
            name=f"{row[0]} owner",
            role="admin",
            joined=row[1],
        )
        return OrgDescription(name=row[0], created_at=row[1], members=(owner,))

    async def describe(org_id: str) -> OrgDescription | None:
        return await state.db.run(lookup, org_id)

    return describe


def _busy() -> HTTPError:
    return HTTPError(
        429,
        "The organisation's data is locked by other writes; nothing was written. Retry after "
        f"{RETRY_AFTER} s",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


# -- schema and definitions ------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/tools/schema",
        scope="read",
        summary="Every table: the organisation's own first, then platform tables",
        responses=(Response(schema=array(ref("TableInfo"))),),
        hosted=True,
    )
)
@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/datasets",
        scope="read",
        summary="Table definitions (as tools/schema)",
        responses=(Response(schema=array(ref("TableInfo"))),),
    )
)
async def get_schema(request: web.Request) -> web.StreamResponse:
    """``GET /v1/tools/schema`` (also ``GET /v1/datasets``)."""
    org = await request.app[DATASETS].org(principal(request).org_id)
    return json_response([t.schema_json() for t in org.catalog.ordered()])


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/datasets/{name}",
        scope="read",
        summary="One table's definition",
        params=(path_param("name", "The table's name"),),
        responses=(Response(schema=ref("TableInfo")),),
        errors={404: "No such table"},
    )
)
async def get_dataset(request: web.Request) -> web.StreamResponse:
    """``GET /v1/datasets/{name}``: one table's definition."""
    org = await request.app[DATASETS].org(principal(request).org_id)
    name = request.match_info["name"]
    table = org.catalog.resolve(name)
    if table is None:
        raise HTTPError(404, f"Table {name} not found")
    return json_response(table.schema_json())


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/datasets",
        scope="write",
        summary="Create a table",
        body=Body(schema=ref("TableDefinition")),
        responses=(Response(status=201, description="Created", schema=ref("TableInfo")),),
        errors={409: "A table of that name exists", 429: wire.BUSY},
    )
)
async def create_dataset(request: web.Request) -> web.StreamResponse:
    """``POST /v1/datasets``: create a table."""
    org = await request.app[DATASETS].org(principal(request).org_id)
    body = await read_json_object(request)
    table = parse_definition(body, org.catalog)
    now = request.app[STATE].now()

    def create(conn: sqlite3.Connection) -> Any:
        if org.catalog.resolve(table.name) is not None:
            raise HTTPError(409, f"A table named {table.name} already exists")
        return insert_definition(conn, table, now)

    def publish(created: Any) -> None:
        org.catalog = org.catalog.with_table(created)

    try:
        created = await org.write(create, after=publish)
    except Busy:
        raise _busy() from None
    return json_response(created.schema_json(), status=201)


# -- reads -----------------------------------------------------------------------------------


def _encode_cursor(rowid: int) -> str:
    return base64.urlsafe_b64encode(f"r{rowid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith("r"):
            rowid = int(text[1:])
            if -(2**63) <= rowid < 2**63:  # SQLite's integers (a larger one fails the query)
                return rowid
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise HTTPError(400, "Invalid cursor: pass back the one from the previous page's Link header")


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/tools/read",
        scope="read",
        summary="Rows by equality filters, a page at a time",
        params=PAGE,
        body=Body(schema=ref("ReadRequest")),
        responses=(Response(schema=array(OBJECT)),),
        errors={
            400: "A filter names no column, an invalid cursor, several rows in mode single",
            404: "No such table",
        },
        paginated=True,
        hosted=True,
    )
)
async def read_rows(request: web.Request) -> web.StreamResponse:
    """``POST /v1/tools/read``: rows by equality filters, a page at a time."""
    state = request.app[STATE]
    org = await request.app[DATASETS].org(principal(request).org_id)
    body = await read_json_object(request)
    f = Fields(body)
    name = f.string("target_name", required=True, max_length=128)
    target_type = f.string("target_type", required=True, max_length=32)
    mode = f.string("mode", max_length=16) or "multiple"
    filters = body.get("filters")
    if target_type is not None and target_type not in ("table", "core-table"):
        f.add(["target_type"], "Input should be 'table' or 'core-table'", "enum")
    if mode not in ("single", "multiple"):
        f.add(["mode"], "Input should be 'single' or 'multiple'", "enum")
    if filters is not None and not isinstance(filters, dict):
        f.add(["filters"], "Input should be a valid dictionary", "dict_type")
    # The query wins: a next-page link carries the cursor (and the limit left) in its query.
    wanted = positioned_listing(
        state,
        Fields(request.query, "query"),
        f,
        decode=_decode_cursor,
        encode=_encode_cursor,
        cursor_length=256,
    )
    assert name is not None
    table = org.catalog.resolve(name, core=target_type == "core-table" or None)
    if table is None:
        raise HTTPError(404, f"Table {name} not found ({target_type})")

    async def fetch(after: int | None, n: int) -> list[tuple[int, Any]]:
        try:
            return await org.read(
                lambda conn: read_page(
                    conn, org.catalog, table, filters or {}, after=after, limit=n
                )
            )
        except ReadError as exc:
            raise HTTPError(400, str(exc)) from None

    if mode == "single":
        rows = await fetch(wanted.after, 2)
        if len(rows) > 1:
            raise HTTPError(400, f"More than one row of {table.name} matches (mode single)")
        return json_response([row for _, row in rows])
    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/tools/query",
        scope="read",
        summary="Read-only SQL on the organisation's tables (positional %s parameters)",
        body=Body(schema=ref("QueryRequest")),
        responses=(Response(schema=ref("QueryResult")),),
        errors={400: "The query was refused, failed, ran too long or returned too much"},
        hosted=True,
    )
)
async def run_query(request: web.Request) -> web.StreamResponse:
    """``POST /v1/tools/query``: read-only SQL on the caller's organisation."""
    org = await request.app[DATASETS].org(principal(request).org_id)
    body = await read_json_object(request)
    f = Fields(body)
    sql = f.string("query", required=True, max_length=100_000)
    params = f.array("params") or []
    f.check()
    assert sql is not None
    try:
        outcome = await org.query(sql, params)
    except QueryError as exc:
        raise HTTPError(exc.status, exc.detail) from None
    return json_response({"columns": outcome.columns, "data": outcome.data})


# -- writes ----------------------------------------------------------------------------------


async def read_body(request: web.Request, limit: int, route: str) -> bytes:
    """The raw body, refused with 413 once it reaches ``limit`` bytes (``route`` names the
    route in the message)."""

    def too_large(size: str) -> HTTPError:
        return HTTPError(
            413,
            f"The request body is {size} bytes; {route} accepts bodies under "
            f"{limit:,} bytes ({limit / 1_000_000:g} MB). Split the write into several requests",
            close=True,
        )

    if request.content_length is not None and request.content_length >= limit:
        raise too_large(f"{request.content_length:,}")
    raw = bytearray()
    while chunk := await request.content.readany():
        raw += chunk
        if len(raw) >= limit:
            raise too_large("at least " + f"{len(raw):,}")
    return bytes(raw)


async def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (a large one decoded off the event loop); 422 otherwise."""
    if not raw.strip():
        raise invalid(["body"], "A JSON body is required", "missing")
    if len(raw) > _PARSE_IN_THREAD:
        data = await asyncio.to_thread(decode_json, raw)
    else:
        data = decode_json(raw)
    if not isinstance(data, dict):
        raise invalid(["body"], "The body must be a JSON object", "dict_type")
    return data


def _new_execution(conn: sqlite3.Connection, org_id: str, job_name: str, now: str) -> str:
    job_id = records.get_or_create_job(conn, org_id, job_name, now)
    return records.insert_execution(
        conn,
        org_id=org_id,
        job_id=job_id,
        status="running",
        off_platform=True,
        now=now,
        timeout_at=None,
    )


def _discard_execution(conn: sqlite3.Connection, execution_id: str) -> None:
    # The execution was opened for a write that did not happen: it never existed.
    conn.execute("DELETE FROM job_executions WHERE id = ?", (execution_id,))


def _record(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    execution_id: str,
    created_here: bool,
    outcome: WriteOutcome,
    now: str,
) -> None:
    if created_here:
        records.finish_execution(conn, execution_id, "completed", now)
    if outcome.changed:
        conn.execute(
            "INSERT INTO dataset_writes (id, org_id, job_execution_id, created_at, summary) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                records.new_id(),
                org_id,
                execution_id,
                now,
                json.dumps(outcome.summary, separators=(",", ":")),
            ),
        )


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/data/write",
        scope="write",
        summary="Table writes and series in one transaction",
        body=Body(schema=ref("WriteRequest"), checked=False),  # read by write_data (hosted wording)
        responses=(Response(schema=ref("WriteResult")),),
        errors={
            400: "Problems with the request (all listed; nothing was written)",
            413: "The body is 4.5 MB or more, or over the row or value limits",
            429: wire.BUSY,
        },
        error_schemas={400: {"anyOf": [ref("WriteErrors"), ref("Error")]}},
        hosted=True,
    )
)
async def write_data(request: web.Request) -> web.StreamResponse:
    """``POST /v1/data/write``: see :mod:`labric.server.datasets.write`."""
    body = await parse_body(await read_body(request, MAX_BODY_BYTES, "data/write"))
    try:
        check_size(body)
    except TooLarge as exc:
        raise HTTPError(413, str(exc)) from None
    dry_run = body.get("dry_run") is True
    org = await request.app[DATASETS].org(principal(request).org_id)

    def write(
        conn: sqlite3.Connection, execution_id: str, problems: list[tuple[str | None, str]]
    ) -> WriteOutcome:
        return apply_write(conn, org.catalog, body, execution_id=execution_id, problems=problems)

    try:
        outcome, execution_id = await recorded_write(
            request,
            write,
            execution_id=body.get("job_execution_id"),
            job_name=body.get("job_name"),
            dry_run=dry_run,
        )
    except Rejected as exc:
        return json_response({"errors": exc.problems.to_json()}, status=400)
    outcome.response["job_execution_id"] = execution_id
    return json_response(outcome.response)


async def recorded_write(
    request: web.Request,
    work: Callable[[sqlite3.Connection, str, list[tuple[str | None, str]]], WriteOutcome],
    *,
    execution_id: Any,
    job_name: Any,
    dry_run: bool,
) -> tuple[WriteOutcome, str | None]:
    """Run one write transaction on the caller's organisation, recorded under an execution.

    The execution is the one named, else the running job's (a job's own key), else a new one
    of ``job_name`` (default :data:`DEFAULT_JOB_NAME`), opened for this write, completed with
    it, and discarded if the write fails. A dry run rolls back and records nothing.

    Args:
        request: The request (its key says the organisation and any running execution).
        work: ``work(conn, execution_id, problems)`` makes the writes inside the transaction;
            ``problems`` are those found with the execution fields, to report with its own.
        execution_id: The request's ``job_execution_id`` (checked here).
        job_name: The request's ``job_name`` (checked here).
        dry_run: Roll back.

    Returns:
        The outcome and the execution it was recorded under (``None`` on a dry run).

    Raises:
        Rejected: the write found problems; nothing was written.
        HTTPError: 429 when the organisation's data stayed locked.
    """
    state = request.app[STATE]
    who = principal(request)
    org = await request.app[DATASETS].org(who.org_id)
    problems: list[tuple[str | None, str]] = []
    if job_name is not None and (not isinstance(job_name, str) or len(job_name) > 255):
        problems.append(("job_name", "job_name must be a string of at most 255 characters"))
        job_name = None
    if execution_id is not None:
        if not isinstance(execution_id, str) or not execution_id:
            problems.append(("job_execution_id", "job_execution_id must be a string"))
            execution_id = None
        elif await state.db.run(records.execution_get, who.org_id, execution_id) is None:
            problems.append(("job_execution_id", f"Job execution {execution_id} not found"))
    elif who.job_execution_id is not None:
        execution_id = who.job_execution_id
    now = state.now()
    opened: str | None = None
    if execution_id is None and not dry_run and not problems:
        name = job_name.strip() if job_name and job_name.strip() else DEFAULT_JOB_NAME
        opened = await state.db.run(_new_execution, who.org_id, name, now)
        execution_id = opened
    recorded_as = execution_id or "dry-run"
    try:
        outcome = await org.write(work, recorded_as, problems, rollback=dry_run)
    except (Rejected, Busy) as exc:
        if opened is not None:
            await state.db.run(_discard_execution, opened)
        if isinstance(exc, Busy):
            raise _busy() from None
        raise
    except BaseException:
        if opened is not None:
            await asyncio.shield(state.db.run(_discard_execution, opened))
        raise
    if dry_run or execution_id is None:
        return outcome, None
    recorded: str = execution_id
    await state.db.run(
        lambda conn: _record(
            conn,
            org_id=who.org_id,
            execution_id=recorded,
            created_here=opened is not None,
            outcome=outcome,
            now=state.now(),
        )
    )
    return outcome, recorded


# -- revert ----------------------------------------------------------------------------------


@attrs.frozen
class _Forgotten:
    """What reverting an execution removed from the metadata: its files (with their parts), the
    masks it saved, the masks others saved on its files, and its unreverted writes' summaries."""

    files: list[tuple[records.FileRow, list[records.PartRow]]]
    masks: list[tuple[str, str]]
    masks_on_files: int
    summaries: list[dict[str, Any]]


def _forget_files_and_ledger(
    conn: sqlite3.Connection, org_id: str, execution_id: str, now: str
) -> _Forgotten:
    masks = images_store.forget_execution(conn, org_id, execution_id)
    removed: list[tuple[records.FileRow, list[records.PartRow]]] = []
    for row in conn.execute(
        "SELECT id FROM files WHERE org_id = ? AND job_execution_id = ?", (org_id, execution_id)
    ).fetchall():
        found = records.file_get(conn, row[0], org_id)
        if found is None:
            continue
        removed.append((found, records.delete_parts(conn, found.id)))
    # Masks others saved on these files go with them (their rows by the foreign key).
    on_files = images_store.masks_on_files(conn, [found.id for found, _ in removed])
    for found, _ in removed:
        records.delete_file(conn, found.id)
    summaries = [
        json.loads(r[0])
        for r in conn.execute(
            "SELECT summary FROM dataset_writes WHERE job_execution_id = ? AND reverted_at IS NULL "
            "ORDER BY created_at",
            (execution_id,),
        )
    ]
    conn.execute(
        "UPDATE dataset_writes SET reverted_at = ? WHERE job_execution_id = ? "
        "AND reverted_at IS NULL",
        (now, execution_id),
    )
    return _Forgotten(removed, masks, on_files, summaries)


def _warnings(summaries: list[dict[str, Any]]) -> list[str]:
    updated: dict[str, int] = defaultdict(int)
    deleted: dict[str, int] = defaultdict(int)
    cascaded: dict[str, int] = defaultdict(int)
    series: dict[str, int] = defaultdict(int)
    for summary in summaries:
        for t in summary.get("tables", []):
            updated[t["table"]] += t["updated"]
            deleted[t["table"]] += t["deleted"]
            for name, n in (t.get("cascade_deleted") or {}).items():
                cascaded[name] += n
        for s in summary.get("series", []):
            series[s["table"]] += s["parents_not_created"]
    out = [
        f"{n} row(s) of {table} updated by this execution were not restored "
        "(updates cannot be undone)"
        for table, n in updated.items()
        if n
    ]
    out += [
        f"{n} row(s) of {table} deleted by this execution were not restored "
        "(deletes cannot be undone)"
        for table, n in deleted.items()
        if n
    ]
    out += [
        f"{n} row(s) of {table} deleted with them (cascade) were not restored"
        for table, n in cascaded.items()
        if n
    ]
    out += [
        f"Series written onto {n} parent row(s) this execution did not create were not removed "
        f"({table})"
        for table, n in series.items()
        if n
    ]
    return out


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/job-executions/{execution_id}/revert",
        scope="write",
        summary="Delete what an execution created (files, rows and their series)",
        params=(EXECUTION_ID,),
        responses=(Response(schema=ref("RevertResult")),),
        errors={404: "No such execution", 429: wire.BUSY},
        hosted=True,
        tag="job-executions",
    )
)
async def revert_execution(request: web.Request) -> web.StreamResponse:
    """``POST /v1/job-executions/{execution_id}/revert``: delete what the execution created."""
    state = request.app[STATE]
    who = principal(request)
    execution_id = request.match_info["execution_id"]
    if await state.db.run(records.execution_get, who.org_id, execution_id) is None:
        raise HTTPError(404, f"Job execution {execution_id} not found")
    org = await request.app[DATASETS].org(who.org_id)
    try:
        outcome = await org.write(lambda conn: revert(conn, org.catalog, execution_id))
    except Busy:
        raise _busy() from None
    forgotten = await state.db.run(_forget_files_and_ledger, who.org_id, execution_id, state.now())
    removed = forgotten.files
    paths = []
    for row, parts in removed:
        paths += [state.blobs.part_path(row.id, p.number, p.generation) for p in parts]
        if row.generation:
            paths.append(state.blobs.object_path(row.id, row.generation))
    await state.blobs.remove(paths)
    await images_store.remove_masks(state.blobs, forgotten.masks)
    await images_store.remove_file_masks(state.blobs, [row.id for row, _ in removed])
    warnings = _warnings(forgotten.summaries)
    if forgotten.masks_on_files:
        warnings.append(
            f"{forgotten.masks_on_files} mask(s) saved by others on files this execution "
            "created were removed with those files"
        )
    for table, n in outcome.kept.items():
        warnings.append(
            f"{n} row(s) of {table} created by this execution were kept: rows written since "
            "reference them"
        )
    if outcome.gone:
        warnings.append(f"{outcome.gone} row(s) created by this execution no longer existed")
    return json_response(
        {
            "deleted_count": outcome.deleted + len(removed) + len(forgotten.masks),
            "raws_deleted_count": outcome.raws_deleted,
            "skipped_count": outcome.skipped,
            "warnings": warnings,
        }
    )


def register(router: Router) -> None:
    """Add the dataset routes."""
    router.add(ROUTES)

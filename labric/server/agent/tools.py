"""The agent's tools: each reads (or, for the write tools, changes) the caller's organisation
through the same stores the API routes use, so a tool's answer is what the route would say.

===================  =====  ===========================================================
tool                 scope  what it returns
===================  =====  ===========================================================
``list_tables``      read   every table (own first, then platform), with column counts
``describe_table``   read   one table's columns (the hosted ``QueryableTableSchema``)
``count_rows``       read   ``SELECT count(*)`` of one table, under the SQL boundary
``run_sql``          read   a read-only query under the ``tools/query`` boundary
``recent_files``     read   the newest confirmed files
``job_last_run``     read   a job's newest execution
``send_notification`` write a notification to the organisation's inbox (deduplicated)
===================  =====  ===========================================================

Every read goes through the organisation's own data: table reads and SQL run on its dataset
file under :mod:`labric.server.datasets.boundary` (read-only connection, authorizer, limits), the
other tools filter the metadata tables by the caller's organisation. A tool that fails answers
``{"error": ...}`` as its output; it never raises into the run.

Outputs are bounded so an event stays far below the 1 MiB line cap of SSE clients: a query shows
its first :data:`MAX_SQL_ROWS` rows and says how many there were (``row_count``,
``truncated``), and a long text value is cut with a note of its full length.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from labric.server.core import records
from labric.server.core.auth import Principal
from labric.server.core.state import ServerState
from labric.server.datasets.boundary import QueryError
from labric.server.datasets.schema import quote
from labric.server.datasets.store import DatasetStore
from labric.server.jobs import store as jobs_store
from labric.server.notifications import store as notifications_store

__all__ = [
    "MAX_SQL_ROWS",
    "TOOLS",
    "Tool",
    "ToolContext",
]

#: Rows of a query shown in a tool's output (the count says how many there were).
MAX_SQL_ROWS = 50
#: Files a ``recent_files`` call lists at most.
MAX_FILES = 20
#: The longest text value shown in a tool's output.
MAX_TEXT = 2000


@attrs.frozen(kw_only=True)
class ToolContext:
    """What a tool acts on: the server's stores and the caller."""

    state: ServerState
    datasets: DatasetStore
    caller: Principal


ToolFn = Callable[[ToolContext, Mapping[str, Any]], Awaitable[Any]]


@attrs.frozen(kw_only=True)
class Tool:
    """A tool: its name, the scope it needs and what it does."""

    name: str
    scope: str
    summary: str
    run: ToolFn


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + f"… (cut here: {len(value)} characters in all)"
    return value


async def _list_tables(ctx: ToolContext, _args: Mapping[str, Any]) -> Any:
    org = await ctx.datasets.org(ctx.caller.org_id)
    return [
        {
            "name": t.name,
            "description": t.description,
            "semantic_category": t.semantic_category,
            "columns": len(t.columns),
            "platform": t.platform,
        }
        for t in org.catalog.ordered()
    ]


async def _describe_table(ctx: ToolContext, args: Mapping[str, Any]) -> Any:
    org = await ctx.datasets.org(ctx.caller.org_id)
    table = org.catalog.tables.get(str(args.get("table")))
    if table is None:
        return {"error": f"No table named {args.get('table')!r}"}
    return table.schema_json()


async def _query(ctx: ToolContext, sql: str) -> Any:
    try:
        outcome = await ctx.datasets.run_readonly_query(ctx.caller.org_id, sql)
    except QueryError as exc:
        return {"error": exc.detail}
    rows = [[_short(v) for v in row] for row in outcome.data[:MAX_SQL_ROWS]]
    return {
        "columns": outcome.columns,
        "data": rows,
        "row_count": len(outcome.data),
        "truncated": len(outcome.data) > MAX_SQL_ROWS,
    }


async def _count_rows(ctx: ToolContext, args: Mapping[str, Any]) -> Any:
    name = str(args.get("table"))
    result = await _query(ctx, f"SELECT count(*) AS row_count FROM {quote(name)}")
    if "error" in result:
        return result
    return {"table": name, "rows": result["data"][0][0]}


async def _run_sql(ctx: ToolContext, args: Mapping[str, Any]) -> Any:
    return await _query(ctx, str(args.get("query", "")))


async def _recent_files(ctx: ToolContext, args: Mapping[str, Any]) -> Any:
    limit = min(int(args.get("limit") or 10), MAX_FILES)
    org_id = ctx.caller.org_id
    rows = await ctx.state.db.run(
        lambda conn: records.list_files(
            conn, org_id, instrument_id=None, extensions=(), terms=(), after=None, limit=limit
        )
    )
    return [
        {
            "file_id": r.id,
            "path": r.original_path,
            "size_bytes": r.size_bytes,
            "created_at": r.created_at,
        }
        for r in rows
    ]


async def _job_last_run(ctx: ToolContext, args: Mapping[str, Any]) -> Any:
    job_id = str(args.get("job_id"))
    org_id = ctx.caller.org_id
    runs = await ctx.state.db.run(
        lambda conn: jobs_store.execution_list(
            conn, org_id, job_id=job_id, status=None, after=None, limit=1
        )
    )
    if not runs:
        return {"job": args.get("job"), "last_run": None}
    run = runs[0]
    return {
        "job": run.job_name,
        "last_run": {
            "execution_id": run.id,
            "status": run.status,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "exit_code": run.exit_code,
        },
    }


async def _send_notification(ctx: ToolContext, args: Mapping[str, Any]) -> Any:
    state = ctx.state
    fields = {
        "title": str(args.get("title"))[:255],
        "dedupe_key": str(args.get("dedupe_key") or f"agent-{uuid.uuid4().hex}"),
        "data": {"sender": "agent"},
    }
    # The reserved key marks the sender; the notifications store adds the key's attribution.
    outcome = await state.db.run(
        lambda conn: notifications_store.send(
            conn,
            ctx.caller.org_id,
            records.new_id(),
            fields,
            api_key_id=ctx.caller.key_id,
            now=state.clock(),
            per_hour=state.settings.notifications_per_hour,
            per_day=state.settings.notifications_per_day,
        )
    )
    if isinstance(outcome, notifications_store.Capped):
        return {
            "error": f"The organisation's notification cap ({outcome.limit} per {outcome.cap}) "
            f"is reached; a slot frees in {outcome.retry_after} seconds"
        }
    status, notification_id = outcome
    return {"id": notification_id, "status": status, "title": fields["title"]}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(name="list_tables", scope="read", summary="list the tables", run=_list_tables),
        Tool(
            name="describe_table",
            scope="read",
            summary="describe a table's columns",
            run=_describe_table,
        ),
        Tool(name="count_rows", scope="read", summary="count a table's rows", run=_count_rows),
        Tool(
            name="run_sql",
            scope="read",
            summary="run a read-only SQL query given in backticks",
            run=_run_sql,
        ),
        Tool(name="recent_files", scope="read", summary="list recent files", run=_recent_files),
        Tool(
            name="job_last_run",
            scope="read",
            summary="show a job's last run",
            run=_job_last_run,
        ),
        Tool(
            name="send_notification",
            scope="write",
            summary="send a notification (with a write key)",
            run=_send_notification,
        ),
    )
}

"""The deprecated write routes, ``tools/write`` and ``tools/batch-write``, on the ``data/write``
engine.

==========================================  =====  ============================================
route                                       scope  what
==========================================  =====  ============================================
``POST /v1/tools/write``                    write  rows of one table (create, create-or-update,
                                                   update); the written records back
``POST /v1/tools/batch-write``              write  rows of several tables, ordered by their
                                                   foreign keys, in one transaction
==========================================  =====  ============================================

Both are superseded by ``data/write`` on the hosted platform and kept for the official client's
``tools.write``, ``tools.batch_write`` and the helpers built on them (``write_core_table``,
``write_labric_table``, the step-recording helpers). Each request is translated into one
``data/write`` request and runs through the same engine (:mod:`.validate`, :mod:`.write`): the
same validation, references, transaction, execution record and revert.

``tools/write``
    ``mode`` ``create`` inserts, ``create-or-update`` updates the row matching
    ``params_to_match_for_update`` (default: the primary key) or inserts one, ``update`` needs a
    match. ``on_match`` defaults to ``fill_missing`` (a matched row takes only the columns that
    are null); ``overwrite`` replaces them, a provided null clearing one. ``defaults`` name a
    function (``DATETIME_NOW``, ``UUID4``) per column, used only for rows inserted without a
    value: they never overwrite. The answer is the written records (``collect_output``), else
    ``[]``; the execution it was recorded under comes in the ``X-Labric-Job-Execution-Id``
    header (a local addition; none on a dry run). ``batch_insert_ok`` is accepted and changes
    nothing: every request is one transaction anyway. Bodies must be under 2.5 MB and hold at
    most 10,000 rows.

``tools/batch-write``
    ``tables`` maps each table to its rows. Tables are written in foreign-key order (a table
    after those it references; request order otherwise). A row may label itself with ``_ref``
    and later rows refer to it as ``@label``. A foreign key may also be a *natural key*: a
    value of the referenced table's natural key column (its unique text column, else ``name``)
    names a row written earlier in the request or one that exists. ``options.mode`` ``upsert``
    matches rows on ``options.match_on[table]`` (default: the primary key). A dry run answers
    the ``plan``. Bodies must be under 4.5 MB and hold at most 10,000 rows.

Organisation-describing tables (``organization``, ``organizationmember``, ``user``, ``table``)
are read-only, and so are the tables other routes keep (``experiment``, ``instrument``); of the
platform tables, only ``procedurestep`` and ``operation`` are writable.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from labric.server.core.auth import principal
from labric.server.core.declare import OBJECT, Body, Operation, Response, array, ref
from labric.server.core.http import Fields, HTTPError, json_response
from labric.server.core.routing import Router, Routes
from labric.server.datasets import wire
from labric.server.datasets.routes import DATASETS, parse_body, read_body, recorded_write
from labric.server.datasets.schema import Catalog, TableDef, quote
from labric.server.datasets.validate import Problems, Rejected, TooLarge, check_size
from labric.server.datasets.write import WriteOutcome, apply_write

__all__ = [
    "BATCH_WRITE_MAX_BYTES",
    "EXECUTION_HEADER",
    "TOOLS_WRITE_MAX_BYTES",
    "batch_write_order",
    "register",
]

#: ``tools/write`` bodies must be smaller than this (the official client's 2.5 MB).
TOOLS_WRITE_MAX_BYTES = 2_500_000
#: ``tools/batch-write`` bodies must be smaller than this (as ``data/write``).
BATCH_WRITE_MAX_BYTES = 4_500_000
#: The response header naming the execution a ``tools/write`` was recorded under.
EXECUTION_HEADER = "X-Labric-Job-Execution-Id"
#: ``tools/write`` modes -> ``data/write`` modes.
TOOLS_MODES = {"create": "insert", "create-or-update": "upsert", "update": "update"}
#: Labels this module gives rows that natural keys refer to (never shown in ``refs``).
_AUTO_LABEL = "\x00natural:"

ROUTES = Routes(wire.DATASETS_FAMILY)


def _problem_response(
    problems: Problems, rename: Callable[[str | None], str | None]
) -> web.StreamResponse:
    """400 with every problem, each path named as the request named it."""
    errors = [{**p, "path": rename(p["path"])} for p in problems.to_json()]
    first = errors[0]["message"] if errors else "The write was refused"
    detail = f"{len(problems)} problem(s); nothing was written. First: {first}"
    return json_response({"detail": detail, "errors": errors}, status=400)


def _table(catalog: Catalog, name: str, target_type: str | None) -> TableDef:
    """The table a ``tools/write`` names: 404 if unknown, 403 if read-only."""
    table = catalog.resolve(name, core=target_type == "core-table" or None)
    if table is None:
        raise HTTPError(404, f"Table {name} not found ({target_type})")
    if table.read_only is not None:
        raise HTTPError(403, f"{table.write_name} {table.read_only}")
    return table


# -- tools/write -----------------------------------------------------------------------------

_TOOLS_PATH = re.compile(r"^tables\[0\]\.rows\[(\d+)\]")
_TOOLS_FIELDS = {
    "tables[0].table": "target_name",
    "tables[0].mode": "mode",
    "tables[0].key": "params_to_match_for_update",
    "tables[0].on_match": "on_match",
}


def _tools_path(path: str | None) -> str | None:
    if path is None:
        return None
    if path.startswith("tables[0].defaults"):
        return "defaults" + path.removeprefix("tables[0].defaults")
    return _TOOLS_FIELDS.get(path) or _TOOLS_PATH.sub(r"data[\1]", path)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/tools/write",
        scope="write",
        summary="Deprecated (use data/write): write records to one table",
        body=Body(schema=ref("LabricWriteRequest"), checked=False),
        responses=(
            Response(
                schema=array(OBJECT),
                headers={EXECUTION_HEADER: {"type": "string"}},
            ),
        ),
        errors={
            400: "Problems with the rows (all listed; nothing was written)",
            403: "The table is read-only",
            404: "No such table",
            413: "The body is 2.5 MB or more, or over 10,000 rows",
            429: wire.BUSY,
        },
        error_schemas={400: {"anyOf": [ref("WriteProblems"), ref("Error")]}},
        hosted=True,
    )
)
async def tools_write(request: web.Request) -> web.StreamResponse:
    """``POST /v1/tools/write``: see the module docstring."""
    body = await parse_body(await read_body(request, TOOLS_WRITE_MAX_BYTES, "tools/write"))
    f = Fields(body)
    name = f.string("target_name", required=True, max_length=128)
    target_type = f.string("target_type", required=True, max_length=32)
    data = f.array("data", required=True)
    mode = f.string("mode", required=True, max_length=32)
    match = f.array("params_to_match_for_update")
    on_match = f.string("on_match", max_length=16) or "fill_missing"
    defaults = body.get("defaults")
    for flag in ("batch_insert_ok", "collect_output", "dry_run"):
        _flag(f, body, flag, [])
    if target_type is not None and target_type not in ("table", "core-table"):
        f.add(["target_type"], "Input should be 'table' or 'core-table'", "enum")
    if mode is not None and mode not in TOOLS_MODES:
        f.add(["mode"], f"Input should be one of {', '.join(map(repr, TOOLS_MODES))}", "enum")
    if on_match not in ("overwrite", "fill_missing"):
        f.add(["on_match"], "Input should be 'overwrite' or 'fill_missing'", "enum")
    if match is not None and not all(isinstance(c, str) for c in match):
        f.add(["params_to_match_for_update"], "Input should be a list of column names")
    if defaults is not None and not isinstance(defaults, dict):
        f.add(["defaults"], "Input should be a valid dictionary", "dict_type")
    if data is not None and not all(isinstance(row, dict) for row in data):
        f.add(["data"], "Input should be a list of objects", "dict_type")
    f.check()
    assert name is not None
    assert mode is not None
    assert data is not None
    try:
        check_size({"tables": [{"rows": data}]})
    except TooLarge as exc:
        raise HTTPError(413, str(exc).replace("data/write", "tools/write")) from None
    org = await request.app[DATASETS].org(principal(request).org_id)
    table = _table(org.catalog, name, target_type)
    engine_mode = TOOLS_MODES[mode]
    write: dict[str, Any] = {
        "table": table.name,
        "rows": data,
        "mode": engine_mode,
        "on_match": on_match,
    }
    if match and engine_mode != "insert":
        write["key"] = match
    collect = body.get("collect_output") is True
    dry_run = body.get("dry_run") is True
    request_body = {"tables": [write], "return_rows": collect}

    def work(
        conn: sqlite3.Connection, execution_id: str, problems: list[tuple[str | None, str]]
    ) -> WriteOutcome:
        return apply_write(
            conn,
            org.catalog,
            request_body,
            execution_id=execution_id,
            problems=problems,
            defaults={0: defaults or {}},
        )

    try:
        outcome, execution_id = await recorded_write(
            request,
            work,
            execution_id=body.get("job_execution_id"),
            job_name=body.get("job_name"),
            dry_run=dry_run,
        )
    except Rejected as exc:
        return _problem_response(exc.problems, _tools_path)
    rows = outcome.response["tables"][0]["rows"] if collect else []
    headers = {EXECUTION_HEADER: execution_id} if execution_id else None
    return json_response(rows or [], headers=headers)


# -- tools/batch-write -----------------------------------------------------------------------


def batch_write_order(catalog: Catalog, names: list[str]) -> list[str]:
    """The request's tables in foreign-key order: each after the tables it references (among
    those in the request), otherwise in request order; a cycle keeps request order."""
    sql_names: dict[str, str] = {}
    references: dict[str, set[str]] = {}
    for name in names:
        table = catalog.resolve(name)
        if table is not None:
            sql_names[name] = table.name
            references[name] = {c.foreign_key for c in table.foreign_keys if c.foreign_key}
    depends = {
        name: {
            other
            for other in names
            if other != name and sql_names.get(other) in references.get(name, set())
        }
        for name in names
    }
    order: list[str] = []
    left = list(names)
    while left:
        # The first table whose references are all written; in a cycle, the first one left.
        ready = next((n for n in left if depends[n] <= set(order)), left[0])
        order.append(ready)
        left.remove(ready)
    return order


def _natural_key(table: TableDef) -> str | None:
    """The column a natural-key reference to ``table`` matches: its first unique text column
    other than the primary key, else ``name``."""
    for column in table.columns:
        if (
            column.unique
            and not column.primary_key
            and column.foreign_key is None
            and column.data_type == "text"
        ):
            return column.name
    named = table.column("name")
    return named.name if named is not None and named.foreign_key is None else None


class _Naturals:
    """Turns natural-key foreign keys into ``@label`` references or lookup objects.

    Rows written earlier in the request are indexed by primary key and natural key as each
    table is read, and the database is asked at most once per value, so a reference costs a
    dictionary lookup.
    """

    def __init__(self, conn: sqlite3.Connection, catalog: Catalog) -> None:
        self.conn = conn
        self.catalog = catalog
        # table -> value of its primary or natural key -> the row written earlier
        self.written: dict[str, dict[Any, dict[str, Any]]] = {}
        self.existing: dict[tuple[str, Any], bool] = {}
        self.count = 0

    def exists(self, table: TableDef, value: Any) -> bool:
        known = self.existing.get((table.name, value))
        if known is None:
            key = table.key
            known = key.data_type != "integer" and (
                self.conn.execute(
                    f"SELECT 1 FROM {quote(table.name)} WHERE {quote(key.sql_name)} = ?", (value,)
                ).fetchone()
                is not None
            )
            self.existing[(table.name, value)] = known
        return known

    def label(self, row: dict[str, Any]) -> str:
        if not isinstance(row.get("_ref"), str) or not row["_ref"]:
            self.count += 1
            row["_ref"] = f"{_AUTO_LABEL}{self.count}"
        return f"@{row['_ref']}"

    def resolve(self, target: TableDef, value: Any) -> Any:
        if not isinstance(value, str) or value.startswith("@"):
            return value
        row = self.written.get(target.name, {}).get(value)
        if row is not None:
            return self.label(row)
        natural = _natural_key(target)
        if natural is None or self.exists(target, value):
            return value
        return {natural: value}

    def rows(self, table: TableDef, rows: list[Any]) -> list[Any]:
        out: list[Any] = []
        for row in rows:
            if not isinstance(row, dict):
                out.append(row)
                continue
            copy = dict(row)
            for name, value in row.items():
                column = table.column(name)
                if column is not None and column.foreign_key is not None:
                    copy[name] = self.resolve(self.catalog.tables[column.foreign_key], value)
            out.append(copy)
        index = self.written.setdefault(table.name, {})
        keys = [table.key.name, _natural_key(table)]
        for row in out:
            if not isinstance(row, dict):
                continue
            # A value two rows share names the first of them.
            for key in keys:
                value = row.get(key) if key is not None else None
                if isinstance(value, str):
                    index.setdefault(value, row)
        return out


def _flag(f: Fields, data: Mapping[str, Any], name: str, loc: list[str | int]) -> None:
    if data.get(name) is not None and not isinstance(data.get(name), bool):
        f.add([*loc, name], "Input should be a valid boolean", "bool_type")


def _mapping(f: Fields, data: Mapping[str, Any], name: str, loc: list[str | int]) -> Any:
    value = data.get(name)
    if value is not None and not isinstance(value, dict):
        f.add([*loc, name], "Input should be a valid dictionary", "dict_type")
        return None
    return value


def _batch_options(body: Mapping[str, Any]) -> dict[str, Any]:
    f = Fields(body)
    tables = _mapping(f, body, "tables", [])
    if body.get("tables") is None:
        f.add(["tables"], "Field required", "missing")
    elif tables is not None:
        if not tables:
            f.add(["tables"], "Name at least one table")
        for name, rows in tables.items():
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                f.add(["tables", name], "Input should be a list of objects", "list_type")
    options = _mapping(f, body, "options", []) or {}
    mode = options.get("mode") or "insert"
    if mode not in ("insert", "upsert"):
        f.add(["options", "mode"], "Input should be 'insert' or 'upsert'", "enum")
    match_on = _mapping(f, options, "match_on", ["options"]) or {}
    for name, columns in match_on.items():
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
        ):
            f.add(["options", "match_on", name], "Input should be a list of column names")
    for flag in ("dry_run", "return_records"):
        _flag(f, options, flag, ["options"])
    f.check()
    return {
        "tables": tables,
        "mode": mode,
        "match_on": match_on,
        "dry_run": options.get("dry_run") is True,
        "return_records": options.get("return_records") is True,
        "job_execution_id": options.get("job_execution_id"),
        "job_name": options.get("job_name"),
    }


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/tools/batch-write",
        scope="write",
        summary="Deprecated (use data/write): write several tables in one transaction",
        body=Body(schema=ref("BatchWriteRequest"), checked=False),
        responses=(Response(schema=ref("BatchWriteResult")),),
        errors={
            400: "Problems with the rows (all listed; nothing was written)",
            413: "The body is 4.5 MB or more, or over 10,000 rows",
            429: wire.BUSY,
        },
        error_schemas={400: {"anyOf": [ref("WriteProblems"), ref("Error")]}},
        hosted=True,
    )
)
async def batch_write(request: web.Request) -> web.StreamResponse:
    """``POST /v1/tools/batch-write``: see the module docstring."""
    body = await parse_body(await read_body(request, BATCH_WRITE_MAX_BYTES, "tools/batch-write"))
    options = _batch_options(body)
    tables: dict[str, list[Any]] = options["tables"]
    try:
        check_size({"tables": [{"rows": rows} for rows in tables.values()]})
    except TooLarge as exc:
        raise HTTPError(413, str(exc).replace("data/write", "tools/batch-write")) from None
    org = await request.app[DATASETS].org(principal(request).org_id)
    catalog = org.catalog
    order = batch_write_order(catalog, list(tables))
    upsert = options["mode"] == "upsert"
    dry_run = options["dry_run"]
    paths: dict[int, str] = dict(enumerate(order))

    def rename(path: str | None) -> str | None:
        if path is None:
            return None
        found = re.match(r"^tables\[(\d+)\](?:\.rows\[(\d+)\])?(.*)$", path)
        if found is None:
            return path
        name = paths.get(int(found[1]), "?")
        if found[2] is not None:
            return f"tables.{name}[{found[2]}]{found[3]}"
        return f"tables.{name}{'' if found[3] == '.table' else found[3]}"

    def work(
        conn: sqlite3.Connection, execution_id: str, problems: list[tuple[str | None, str]]
    ) -> WriteOutcome:
        naturals = _Naturals(conn, catalog)
        writes: list[dict[str, Any]] = []
        for name in order:
            table = catalog.resolve(name)
            rows = tables[name]
            if table is not None and table.pk is not None:
                rows = naturals.rows(table, rows)
            write: dict[str, Any] = {"table": name, "rows": rows}
            if upsert:
                write["mode"] = "upsert"
                if options["match_on"].get(name):
                    write["key"] = options["match_on"][name]
            writes.append(write)
        request_body = {"tables": writes, "return_rows": options["return_records"]}
        return apply_write(
            conn, catalog, request_body, execution_id=execution_id, problems=problems
        )

    try:
        outcome, execution_id = await recorded_write(
            request,
            work,
            execution_id=options["job_execution_id"],
            job_name=options["job_name"],
            dry_run=dry_run,
        )
    except Rejected as exc:
        return _problem_response(exc.problems, rename)
    results = outcome.response["tables"]
    summary = {
        name: {"created": r["created"], "updated": r["updated"]}
        for name, r in zip(order, results, strict=True)
    }
    answer: dict[str, Any] = {
        "success": True,
        "job_execution_id": execution_id,
        "summary": summary,
        "refs": {k: v for k, v in outcome.response["refs"].items() if _AUTO_LABEL not in k},
        "records": None,
        "plan": None,
    }
    if options["return_records"]:
        answer["records"] = {name: r["rows"] or [] for name, r in zip(order, results, strict=True)}
    if dry_run:
        answer["plan"] = {
            "insert_order": order,
            "operations": [
                {
                    "table": name,
                    "mode": options["mode"],
                    "rows": len(tables[name]),
                    "create": r["created"],
                    "update": r["updated"],
                }
                for name, r in zip(order, results, strict=True)
            ],
        }
    return json_response(answer)


def register(router: Router) -> None:
    """Add the deprecated write routes."""
    router.add(ROUTES)

"""Dashboards on the local server: what a widget may say, where dashboards are kept, and how a
widget's data is computed.

A dashboard has a name, a description and an ordered list of widgets. Every widget has an ``id``
(unique within its dashboard; generated when a request leaves it out), a ``type``, an optional
``title`` and a ``layout`` on a 12-column grid (``x`` 0-11, ``w`` 1-12 with ``x + w <= 12``,
``y >= 0``, ``h >= 1``; a widget sent without one is placed under the widgets before it, full
width). The types:

=========  ========================================================================================
``chart``  ``kind`` ``line``, ``bar``, ``scatter`` (``x``: a column, default the first; ``y``: the
           columns plotted against it, default the others) or ``histogram`` (``column``, default
           the first, binned by the server into ``bins`` equal-width bins, default 10)
``table``  the source's rows as they are
``metric`` one value, the first column of the first row, with an optional ``label`` and ``unit``
``text``   ``markdown``, and no source
=========  ========================================================================================

Every type but text has a ``source``:

* ``{"type": "sql", "query": ..., "params": [...]}``: read-only SQL with positional ``%s``
  parameters, run by :meth:`DatasetStore.run_readonly_query`, the boundary ``tools/query`` uses
  (:mod:`labric.server.datasets.boundary`): the server's tables and other organisations' tables
  are not reachable, whatever the SQL says. Nothing here reads the SQL text.
* ``{"type": "dataset", "table": ..., "columns": [...], "filters": {...}, "order_by": ...,
  "descending": false, "limit": ...}``: rows of one table, filtered by equality exactly as
  ``tools/read`` filters them (:func:`labric.server.datasets.reads.build_filters`, foreign-key
  paths included); the SQL is built from the catalog, so unknown names fail before any SQL exists.

A request's widgets are validated as a whole (every problem in one 422, located as
``["body", "widgets", i, ...]``). What a source names (tables, columns) can only be checked
against the data when the widget is evaluated: a source that no longer fits answers 400 from
the widget's data route, naming the widget and the problem.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from labric.server.core.http import Fields, HTTPError
from labric.server.datasets.boundary import QueryError, QueryLimits
from labric.server.datasets.reads import ReadError, build_filters
from labric.server.datasets.schema import Catalog, ColumnDef, decode_value, quote
from labric.server.datasets.store import DatasetStore

__all__ = [
    "CHART_KINDS",
    "DEFAULT_BINS",
    "GRID_COLUMNS",
    "MAX_BINS",
    "MAX_WIDGETS",
    "WIDGET_TYPES",
    "DashboardRow",
    "dashboard_delete",
    "dashboard_get",
    "dashboard_insert",
    "dashboard_json",
    "dashboard_list",
    "dashboard_update",
    "evaluate",
    "parse_widgets",
]

#: The grid's width in columns.
GRID_COLUMNS = 12
#: The lowest row a widget may start on, and the tallest a widget may be (in grid rows).
MAX_GRID_Y = 10_000
MAX_GRID_H = 100
#: The most widgets one dashboard holds.
MAX_WIDGETS = 100
WIDGET_TYPES = ("chart", "table", "metric", "text")
CHART_KINDS = ("line", "bar", "scatter", "histogram")
SOURCE_TYPES = ("sql", "dataset")
DEFAULT_BINS = 10
MAX_BINS = 1000
#: The most parameters an SQL source may carry.
MAX_PARAMS = 1000
#: A widget sent without a layout gets this height (and the full width).
DEFAULT_HEIGHT = 4
_WIDGET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Problems = list[tuple[list[str | int], str, str]]


# -- validation --------------------------------------------------------------------------------


class _Reader:
    """Reads the typed fields of one JSON object, recording problems under a location."""

    def __init__(self, data: Mapping[str, Any], loc: list[str | int], problems: Problems) -> None:
        self.data = data
        self.loc = loc
        self.problems = problems

    def add(self, name: str | int | None, msg: str, kind: str = "value_error") -> None:
        where = self.loc if name is None else [*self.loc, name]
        self.problems.append((where, msg, kind))

    def string(self, name: str, *, required: bool = False, max_length: int = 1024) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.add(name, "Field required", "missing")
            return None
        if not isinstance(value, str):
            self.add(name, "Input should be a valid string", "string_type")
            return None
        if len(value) > max_length:
            self.add(name, f"String should have at most {max_length} characters", "string_too_long")
            return None
        return value

    def name(self, name: str, *, required: bool = False) -> str | None:
        """A non-empty string naming a table or column."""
        value = self.string(name, required=required, max_length=128)
        if value is not None and not value.strip():
            self.add(name, "String should not be empty", "string_too_short")
            return None
        return value

    def integer(
        self, name: str, *, required: bool = False, minimum: int, maximum: int
    ) -> int | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.add(name, "Field required", "missing")
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.add(name, "Input should be a valid integer", "int_type")
            return None
        if value < minimum:
            self.add(
                name, f"Input should be greater than or equal to {minimum}", "greater_than_equal"
            )
            return None
        if value > maximum:
            self.add(name, f"Input should be less than or equal to {maximum}", "less_than_equal")
            return None
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.add(name, "Input should be a valid boolean", "bool_type")
            return None
        return value

    def names(self, name: str) -> list[str] | None:
        """A non-empty list of distinct names, or a single name (taken as a list of one)."""
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.add(name, "Input should be a valid list of column names", "list_type")
            return None
        if not value:
            self.add(name, "List should have at least 1 item", "too_short")
            return None
        out: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip() or len(item) > 128:
                self.add(name, f"Item {index} should be a column name", "string_type")
                return None
            if item in out:
                self.add(name, f"Column {item!r} is listed more than once")
                return None
            out.append(item)
        return out

    def child(self, name: str, *, required: bool = False) -> _Reader | None:
        """The object under ``name``, to read its own fields."""
        value = self.data.get(name)
        if value is None:
            if required:
                self.add(name, "Field required", "missing")
            return None
        if not isinstance(value, dict):
            self.add(name, "Input should be a valid object", "dict_type")
            return None
        return _Reader(value, [*self.loc, name], self.problems)

    def choice(self, name: str, options: Sequence[str], *, required: bool = False) -> str | None:
        value = self.string(name, required=required, max_length=64)
        if value is not None and value not in options:
            self.add(name, f"Input should be {_one_of(options)}", "enum")
            return None
        return value


def _one_of(options: Sequence[str]) -> str:
    quoted = [f"'{o}'" for o in options]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _layout(reader: _Reader, bottom: int) -> dict[str, int] | None:
    layout = reader.child("layout")
    if layout is None:
        if reader.data.get("layout") is not None:
            return None  # not an object: already reported
        return {"x": 0, "y": bottom, "w": GRID_COLUMNS, "h": DEFAULT_HEIGHT}
    x = layout.integer("x", required=True, minimum=0, maximum=GRID_COLUMNS - 1)
    y = layout.integer("y", required=True, minimum=0, maximum=MAX_GRID_Y)
    w = layout.integer("w", required=True, minimum=1, maximum=GRID_COLUMNS)
    h = layout.integer("h", required=True, minimum=1, maximum=MAX_GRID_H)
    if x is None or y is None or w is None or h is None:
        return None
    if x + w > GRID_COLUMNS:
        layout.add(
            "w",
            f"The widget is wider than the grid: x + w is {x + w}, more than {GRID_COLUMNS}",
            "grid_overflow",
        )
        return None
    return {"x": x, "y": y, "w": w, "h": h}


def _source(reader: _Reader, max_rows: int) -> dict[str, Any] | None:
    source = reader.child("source", required=True)
    if source is None:
        return None
    kind = source.choice("type", SOURCE_TYPES, required=True)
    if kind == "sql":
        query = source.string("query", required=True, max_length=100_000)
        if query is not None and not query.strip():
            source.add("query", "String should not be empty", "string_too_short")
        params = source.data.get("params")
        if params is None:
            params = []
        elif not isinstance(params, list):
            source.add("params", "Input should be a valid list", "list_type")
        elif len(params) > MAX_PARAMS:
            source.add("params", f"List should have at most {MAX_PARAMS} items", "too_long")
        else:
            for index, value in enumerate(params):
                if not _is_scalar(value):
                    source.add(
                        "params",
                        f"Parameter {index} should be a string, number, boolean or null",
                        "scalar_type",
                    )
                    break
        if query is None or not query.strip() or not isinstance(params, list):
            return None
        return {"type": "sql", "query": query, "params": params}
    if kind == "dataset":
        table = source.name("table", required=True)
        columns = source.names("columns")
        filters = source.data.get("filters")
        if filters is not None:
            if not isinstance(filters, dict):
                source.add("filters", "Input should be a valid dictionary", "dict_type")
                filters = None
            elif not all(_is_scalar(v) for v in filters.values()):
                source.add(
                    "filters", "Each filter value should be a string, number, boolean or null"
                )
                filters = None
        order_by = source.name("order_by")
        descending = source.boolean("descending")
        limit = source.integer("limit", minimum=1, maximum=max_rows)
        if table is None:
            return None
        return {
            "type": "dataset",
            "table": table,
            "columns": columns,
            "filters": filters or {},
            "order_by": order_by,
            "descending": bool(descending),
            "limit": limit,
        }
    return None


def _widget(
    reader: _Reader, taken: set[str], reserved: set[str], bottom: int, max_rows: int
) -> dict[str, Any] | None:
    before = len(reader.problems)
    widget_id = reader.string("id", max_length=64)
    if widget_id is not None:
        if not _WIDGET_ID.match(widget_id):
            reader.add("id", "Use 1 to 64 letters, digits, '_' or '-'", "string_pattern_mismatch")
        elif widget_id in taken:
            reader.add("id", f"Another widget of this dashboard has the id {widget_id!r}")
    kind = reader.choice("type", WIDGET_TYPES, required=True)
    title = reader.string("title", max_length=255)
    layout = _layout(reader, bottom)
    out: dict[str, Any] = {"id": widget_id, "type": kind, "title": title, "layout": layout}
    if kind == "text":
        out["markdown"] = reader.string("markdown", required=True, max_length=100_000)
        if reader.data.get("source") is not None:
            reader.add("source", "A text widget has no data source", "extra_forbidden")
    elif kind is not None:
        out["source"] = _source(reader, max_rows)
    if kind == "chart":
        chart = reader.choice("kind", CHART_KINDS, required=True)
        out["kind"] = chart
        if chart == "histogram":
            out["column"] = reader.name("column")
            bins = reader.integer("bins", minimum=1, maximum=MAX_BINS)
            out["bins"] = DEFAULT_BINS if bins is None else bins
        else:
            out["x"] = reader.name("x")
            out["y"] = reader.names("y")
    elif kind == "metric":
        out["label"] = reader.string("label", max_length=255)
        out["unit"] = reader.string("unit", max_length=64)
    if len(reader.problems) > before:
        return None
    if widget_id is None:
        out["id"] = f"w_{uuid.uuid4().hex[:12]}"
        while out["id"] in reserved or out["id"] in taken:
            out["id"] = f"w_{uuid.uuid4().hex[:12]}"
    taken.add(out["id"])
    return out


def parse_widgets(f: Fields, items: list[Any] | None, *, max_rows: int) -> list[dict[str, Any]]:
    """Validate a request's ``widgets``; problems go to ``f`` (call ``f.check()`` after).

    Args:
        f: The request body's fields.
        items: The ``widgets`` list as sent (``None``: none).
        max_rows: The most rows a dataset source may ask for.

    Returns:
        The widgets in their stored form: every field of the type present, ids generated.
    """
    if items is None:
        return []
    if len(items) > MAX_WIDGETS:
        f.add(["widgets"], f"A dashboard holds at most {MAX_WIDGETS} widgets", "too_long")
        return []
    problems: Problems = []
    # A generated id must not collide with one the request gives to a later widget.
    reserved = {i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)}
    taken: set[str] = set()
    out: list[dict[str, Any]] = []
    bottom = 0
    for index, item in enumerate(items):
        loc: list[str | int] = ["widgets", index]
        if not isinstance(item, dict):
            problems.append((loc, "Each widget must be an object", "dict_type"))
            continue
        widget = _widget(_Reader(item, loc, problems), taken, reserved, bottom, max_rows)
        if widget is not None:
            layout = widget["layout"]
            bottom = max(bottom, layout["y"] + layout["h"])
            out.append(widget)
    for loc, msg, kind in problems:
        f.add(loc, msg, kind)
    return out


# -- storage (functions run on the database thread) -------------------------------------------


@attrs.frozen(kw_only=True)
class DashboardRow:
    """A stored dashboard."""

    rowid: int
    id: str
    name: str
    description: str | None
    widgets: list[dict[str, Any]]
    created_at: str
    updated_at: str


def _row(row: sqlite3.Row) -> DashboardRow:
    return DashboardRow(
        rowid=row["seq"],
        id=row["id"],
        name=row["name"],
        description=row["description"],
        widgets=json.loads(row["widgets"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _dump(widgets: list[dict[str, Any]]) -> str:
    return json.dumps(widgets, separators=(",", ":"), ensure_ascii=False)


def dashboard_insert(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    name: str,
    description: str | None,
    widgets: list[dict[str, Any]],
    now: str,
) -> DashboardRow:
    """Store a new dashboard and return it."""
    dashboard_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO dashboards (id, org_id, name, description, widgets, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (dashboard_id, org_id, name, description, _dump(widgets), now, now),
    )
    found = dashboard_get(conn, org_id, dashboard_id)
    assert found is not None
    return found


def dashboard_get(conn: sqlite3.Connection, org_id: str, dashboard_id: str) -> DashboardRow | None:
    """One of the organisation's dashboards, or ``None``."""
    row = conn.execute(
        "SELECT * FROM dashboards WHERE id = ? AND org_id = ?", (dashboard_id, org_id)
    ).fetchone()
    return None if row is None else _row(row)


def dashboard_list(
    conn: sqlite3.Connection, org_id: str, *, after: tuple[str, int] | None, limit: int
) -> list[DashboardRow]:
    """Dashboards, newest first (creation time, then insertion order), after a cursor."""
    where = "org_id = ?"
    params: list[Any] = [org_id]
    if after is not None:
        where += " AND (created_at, seq) < (?, ?)"
        params += [after[0], after[1]]
    rows = conn.execute(
        f"SELECT * FROM dashboards WHERE {where} ORDER BY created_at DESC, seq DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [_row(row) for row in rows]


def dashboard_update(
    conn: sqlite3.Connection,
    org_id: str,
    dashboard_id: str,
    changes: Mapping[str, Any],
    now: str,
) -> DashboardRow | None:
    """Apply ``changes`` (``name``, ``description``, ``widgets``); ``None`` if there is no such
    dashboard."""
    if dashboard_get(conn, org_id, dashboard_id) is None:
        return None
    values = {k: _dump(v) if k == "widgets" else v for k, v in changes.items()}
    values["updated_at"] = now
    assignments = ", ".join(f"{name} = ?" for name in values)
    conn.execute(
        f"UPDATE dashboards SET {assignments} WHERE id = ? AND org_id = ?",
        [*values.values(), dashboard_id, org_id],
    )
    return dashboard_get(conn, org_id, dashboard_id)


def dashboard_delete(conn: sqlite3.Connection, org_id: str, dashboard_id: str) -> bool:
    """Delete a dashboard; return whether it existed."""
    cur = conn.execute("DELETE FROM dashboards WHERE id = ? AND org_id = ?", (dashboard_id, org_id))
    return cur.rowcount > 0


def dashboard_json(row: DashboardRow) -> dict[str, Any]:
    """A dashboard as the routes answer it."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "widgets": row.widgets,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# -- evaluation --------------------------------------------------------------------------------


class _SourceError(Exception):
    """The source cannot be evaluated against the data as it is now."""


def _estimated_size(value: Any) -> int:
    """Roughly the bytes a value takes as JSON (as the SQL boundary estimates it)."""
    return len(value) + 2 if isinstance(value, str) else 12


def _read_table(
    conn: sqlite3.Connection, catalog: Catalog, source: Mapping[str, Any], limits: QueryLimits
) -> tuple[list[str], list[list[Any]]]:
    """A dataset source's rows, read as ``tools/read`` reads (built from the catalog), under the
    row and size caps of a query: a result over them fails rather than being cut short."""
    name = source["table"]
    table = catalog.resolve(name)
    if table is None:
        raise _SourceError(f"there is no table {name!r}")

    def column(wanted: str, what: str) -> ColumnDef:
        found = table.column(wanted)
        if found is None:
            known = ", ".join(c.name for c in table.columns)
            raise _SourceError(f"{what}: {table.name} has no column {wanted!r} (columns: {known})")
        return found

    chosen = (
        [column(c, "columns") for c in source["columns"]]
        if source["columns"]
        else list(table.columns)
    )
    try:
        joins, conditions, params = build_filters(catalog, table, source["filters"])
    except ReadError as exc:
        raise _SourceError(str(exc)) from None
    direction = " DESC" if source["descending"] else ""
    order = f"t0.rowid{direction}"  # insertion order breaks ties
    if source["order_by"] is not None:
        order = f"t0.{quote(column(source['order_by'], 'order_by').sql_name)}{direction}, {order}"
    max_rows = limits.max_rows
    # One row past the cap tells a result that is over it from one that fits exactly.
    fetch = max_rows + 1 if source["limit"] is None else min(source["limit"], max_rows + 1)
    selected = ", ".join(f"t0.{quote(c.sql_name)}" for c in chosen)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT {selected} FROM {quote(table.name)} t0 {' '.join(joins)}{where} "
        f"ORDER BY {order} LIMIT ?"
    )
    rows = conn.execute(sql, [*params, fetch]).fetchall()
    if len(rows) > max_rows:
        raise _SourceError(
            f"the table has more than {max_rows:,} matching rows, the most a widget may show: "
            "add filters or a lower limit"
        )
    if sum(_estimated_size(v) for row in rows for v in row) > limits.max_bytes:
        raise _SourceError(
            f"the rows are larger than {limits.max_bytes:,} bytes, the most a widget may show: "
            "choose fewer columns or rows"
        )
    types = [c.data_type for c in chosen]
    return [c.name for c in chosen], [
        [decode_value(t, v) for t, v in zip(types, row, strict=True)] for row in rows
    ]


async def _run_source(
    store: DatasetStore, org_id: str, source: Mapping[str, Any]
) -> tuple[list[str], list[list[Any]]]:
    if source["type"] == "sql":
        try:
            outcome = await store.run_readonly_query(org_id, source["query"], source["params"])
        except QueryError as exc:
            raise _SourceError(exc.detail) from None
        return outcome.columns, outcome.data
    org = await store.org(org_id)
    catalog = org.catalog
    limits = store.limits.query
    return await org.read(lambda conn: _read_table(conn, catalog, source, limits))


def _index(columns: list[str], name: str, what: str) -> int:
    if name not in columns:
        raise _SourceError(
            f"{what}: the column {name!r} is not in the result (columns: {', '.join(columns)})"
        )
    return columns.index(name)


def _histogram(values: list[float], bins: int) -> list[list[Any]]:
    """``[bin_start, bin_end, count]`` for ``bins`` equal-width bins over the values' range.

    Bins are half-open except the last, which holds the maximum (as numpy's histogram).
    """
    if not values:
        return []
    low, high = min(values), max(values)
    if not math.isfinite(high - low):
        # The values span more than a float holds: bin their halves, whose span fits.
        return [[a * 2, b * 2, n] for a, b, n in _histogram([v / 2 for v in values], bins)]
    if low == high:  # one distinct value: centre a unit-wide range on it
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    edges = [low + width * i for i in range(bins)] + [high]
    counts = [0] * bins
    for value in values:
        index = min(int((value - low) / width), bins - 1)
        # Rounding can put a value that sits on an edge one bin off: correct it.
        if value < edges[index]:
            index -= 1
        elif index < bins - 1 and value >= edges[index + 1]:
            index += 1
        counts[index] += 1
    return [[edges[i], edges[i + 1], counts[i]] for i in range(bins)]


async def evaluate(store: DatasetStore, org_id: str, widget: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate one stored widget into ``{"columns", "rows", ...}``.

    Args:
        store: The dataset store.
        org_id: The widget's organisation (its source reads only that organisation's data).
        widget: The widget in its stored form.

    Raises:
        HTTPError: 400 when the source cannot be evaluated (refused or failing SQL, unknown
            table or column, non-numeric histogram values); the detail names the widget.
    """
    kind = widget["type"]
    out: dict[str, Any] = {"widget_id": widget["id"], "type": kind}
    try:
        if kind == "text":
            return {**out, "columns": [], "rows": [], "markdown": widget["markdown"]}
        columns, rows = await _run_source(store, org_id, widget["source"])
        if kind == "table":
            return {**out, "columns": columns, "rows": rows}
        if kind == "metric":
            value = rows[0][0] if rows and columns else None
            return {
                **out,
                "columns": columns[:1],
                "rows": [[value]] if rows and columns else [],
                "value": value,
                "label": widget["label"],
                "unit": widget["unit"],
            }
        chart = widget["kind"]
        if not columns:
            raise _SourceError("the result has no columns")
        if chart == "histogram":
            name = widget["column"] or columns[0]
            at = _index(columns, name, "column")
            values: list[float] = []
            for row in rows:
                value = row[at]
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise _SourceError(
                        f"a histogram needs numbers, but {name!r} holds {json.dumps(value)[:60]}"
                    )
                if math.isfinite(value):
                    values.append(float(value))
            return {
                **out,
                "kind": chart,
                "columns": ["bin_start", "bin_end", "count"],
                "rows": _histogram(values, widget["bins"]),
                "x": "bin_start",
                "y": ["count"],
                "column": name,
                "bins": widget["bins"],
            }
        x = widget["x"] if widget["x"] is not None else (columns[0] if len(columns) > 1 else None)
        if x is not None:
            _index(columns, x, "x")
        y = widget["y"] if widget["y"] is not None else [c for c in columns if c != x]
        for name in y:
            _index(columns, name, "y")
        if not y:
            raise _SourceError("there is no column left to plot against x")
        return {**out, "kind": chart, "columns": columns, "rows": rows, "x": x, "y": y}
    except _SourceError as exc:
        raise HTTPError(400, f"Widget {widget['id']} cannot be evaluated: {exc}") from None

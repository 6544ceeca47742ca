"""The ``data/write`` engine: validate everything, then apply table writes and series in one go.

A request is ``{"tables": [TableWrite...], "series": [SeriesWrite...], ...}`` and runs as one
transaction on the organisation's writer thread, in two phases:

1. **Validation, before any write.** Every table write and row is checked: the table exists and
   is writable, the mode and options make sense, every column is known, every value fits its
   column's type, required columns are present, keys are given where the mode needs them, and
   every foreign key resolves: an id of a row that exists (or that an earlier row of the request
   inserts), an ``@label`` that an earlier row defined with ``"_ref"``, or a lookup object
   (``{"name": "S-001"}``) matching exactly one row that existed before the request. Inserted
   primary keys and unique values must be new. All problems are collected, each with its
   ``path`` (``tables[1].rows[0].sample``), and reported together: the first 100, then one entry
   counting the rest.
2. **Writing**, in request order: table writes first, row by row, then series. ``insert`` adds
   rows (a missing text primary key becomes a UUID, a missing integer one is assigned);
   ``upsert`` updates the row matching ``key`` (default: the primary key) or inserts one;
   ``update`` and ``delete`` need every row to match. ``on_match`` picks ``overwrite`` (set every
   column sent) or ``fill_missing`` (set only columns that are null); columns not sent never
   change. ``delete`` refuses rows that other rows reference unless ``cascade`` is set; rows of
   raw tables always go with their parent. A series replaces the parent's previous points in
   that raw table; the server fills each point's primary key, parent key and ``order``. A key
   that matches no row (or several), or a constraint the database refuses, is a problem too;
   any problem rolls back everything.

A dry run does all of it and rolls back. Otherwise every row the request inserts is recorded
under its job execution (``_labric_created``), so that :func:`revert` can delete exactly those
rows (and their series) later; what it cannot undo is summarised for the write ledger.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from labric.server.datasets.schema import (
    Catalog,
    ColumnDef,
    InvalidValue,
    TableDef,
    decoder,
    encoder,
    quote,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PROBLEMS",
    "MAX_ROWS",
    "MAX_SERIES_VALUES",
    "Problems",
    "Rejected",
    "RevertOutcome",
    "TooLarge",
    "WriteOutcome",
    "apply_write",
    "check_size",
    "delete_rows",
    "revert",
]

#: Request bodies must be smaller than this (the hosted 4.5 MB).
MAX_BODY_BYTES = 4_500_000
#: The most rows a request may write, over all its table writes.
MAX_ROWS = 10_000
#: The most values a request's series may hold, over all series and columns.
MAX_SERIES_VALUES = 250_000
#: Problems reported one by one; the rest are counted in one final entry.
MAX_PROBLEMS = 100

MODES = ("insert", "upsert", "update", "delete")
ON_MATCH = ("overwrite", "fill_missing")
_CHUNK = 500


class Problems:
    """Problems found in a request, each with its path; the first :data:`MAX_PROBLEMS` kept."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.more = 0

    def add(self, path: str | None, message: str) -> None:
        """Record one problem."""
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({"path": path, "message": message})
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items) + self.more

    def to_json(self) -> list[dict[str, Any]]:
        """The ``errors`` list of the 400 body."""
        out = list(self.items)
        if self.more:
            out.append(
                {
                    "path": None,
                    "message": f"{self.more} more problem(s) not listed (only the first "
                    f"{MAX_PROBLEMS} are shown)",
                }
            )
        return out


class Rejected(Exception):
    """The request has problems; nothing was written. Answered 400 ``{"errors": [...]}``."""

    def __init__(self, problems: Problems) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


class TooLarge(Exception):
    """The request is over a size limit. Answered 413 with a ``detail`` naming the limit."""


def check_size(body: Mapping[str, Any]) -> None:
    """Check the row and series-value limits before anything else is looked at.

    Raises:
        TooLarge: more than :data:`MAX_ROWS` rows or :data:`MAX_SERIES_VALUES` series values.
    """
    rows = 0
    tables = body.get("tables")
    if isinstance(tables, list):
        for write in tables:
            if isinstance(write, dict) and isinstance(write.get("rows"), list):
                rows += len(write["rows"])
    if rows > MAX_ROWS:
        raise TooLarge(
            f"The request writes {rows:,} rows; data/write accepts at most {MAX_ROWS:,} rows per "
            "request over all table writes. Split it into several requests"
        )
    values = 0
    series = body.get("series")
    if isinstance(series, list):
        for item in series:
            columns = item.get("columns") if isinstance(item, dict) else None
            if isinstance(columns, dict):
                values += sum(len(v) for v in columns.values() if isinstance(v, list))
    if values > MAX_SERIES_VALUES:
        raise TooLarge(
            f"The request's series hold {values:,} values; data/write accepts at most "
            f"{MAX_SERIES_VALUES:,} series values per request. Split it into several requests"
        )


# -- the plan --------------------------------------------------------------------------------


@attrs.frozen
class Label:
    """A ``@label`` reference, resolved to an id while writing."""

    name: str


@attrs.define
class _Row:
    index: int
    values: dict[str, Any]  # sql column -> stored value or Label
    label: str | None


@attrs.define
class _TableWrite:
    index: int
    table: TableDef
    mode: str
    key: list[ColumnDef]
    cascade: bool
    on_match: str
    rows: list[_Row]
    # Per-write lookups, so the per-row loop does no repeated work.
    lookup: dict[str, ColumnDef] = attrs.field(init=False)
    encoders: dict[str, Any] = attrs.field(init=False)
    required: list[ColumnDef] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.lookup = {**self.table.by_sql_name, **self.table.by_name}
        self.encoders = {
            c.sql_name: encoder(c.data_type) for c in self.table.columns if not c.foreign_key
        }
        self.required = [c for c in self.table.columns if not c.nullable and not c.primary_key]


def _base(write: _TableWrite, j: int) -> str:
    return f"tables[{write.index}].rows[{j}]"


@attrs.define
class _Series:
    index: int
    table: TableDef
    parent_column: ColumnDef
    parent: Any
    columns: list[ColumnDef]
    values: list[list[Any]]
    length: int


@attrs.define
class _Pending:
    """A plain foreign-key id whose existence is checked in bulk after the rows are read."""

    path: str
    target: str
    value: Any
    position: tuple[int, int]


class _Planner:
    """Phase 1: read the request into a plan, collecting every problem."""

    def __init__(self, conn: sqlite3.Connection, catalog: Catalog) -> None:
        self.conn = conn
        self.catalog = catalog
        self.problems = Problems()
        self.labels: dict[str, str] = {}  # label -> table it labels
        self.explicit: dict[str, dict[Any, tuple[int, int]]] = {}  # table -> pk -> position
        self.pending: list[_Pending] = []
        self.lookups: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}

    # - values -

    def value(
        self, column: ColumnDef, value: Any, path: str, position: tuple[int, int]
    ) -> tuple[bool, Any]:
        """``(ok, stored value)`` of a value for ``column`` (foreign keys resolved or deferred)."""
        if value is None:
            return True, None
        if column.foreign_key is not None:
            return self.reference(column, value, path, position)
        try:
            return True, encoder(column.data_type)(value)
        except InvalidValue as exc:
            self.problems.add(path, f"{column.name}: {exc}")
            return False, None

    def reference(
        self, column: ColumnDef, value: Any, path: str, position: tuple[int, int]
    ) -> tuple[bool, Any]:
        target = self.catalog.tables[column.foreign_key or ""]
        if isinstance(value, str) and value.startswith("@"):
            name = value[1:]
            labelled = self.labels.get(name)
            if labelled is None:
                self.problems.add(
                    path, f"{value} is not a label defined (with _ref) by an earlier row"
                )
                return False, None
            if labelled != target.name:
                self.problems.add(
                    path,
                    f"{value} labels a row of {labelled}, but {column.name} references "
                    f"{target.name}",
                )
                return False, None
            return True, Label(name)
        if isinstance(value, dict):
            return self.lookup(target, value, path)
        try:
            stored = encoder(target.key.data_type)(value)
        except InvalidValue as exc:
            self.problems.add(path, f"{column.name}: not an id of {target.name} ({exc})")
            return False, None
        self.pending.append(_Pending(path, target.name, stored, position))
        return True, stored

    def lookup(self, target: TableDef, spec: dict[str, Any], path: str) -> tuple[bool, Any]:
        """Resolve a lookup object to the id of the one row it matches (before the request)."""
        if not spec:
            self.problems.add(path, "A lookup object needs at least one column")
            return False, None
        conditions: list[tuple[str, Any]] = []
        for name, raw in spec.items():
            column = target.column(name)
            if column is None:
                self.problems.add(path, f"lookup: {target.name} has no column {name!r}")
                return False, None
            try:
                stored = (
                    None
                    if raw is None
                    else encoder(
                        column.data_type
                        if column.foreign_key is None
                        else self.catalog.tables[column.foreign_key].key.data_type
                    )(raw)
                )
            except InvalidValue as exc:
                self.problems.add(path, f"lookup {name}: {exc}")
                return False, None
            conditions.append((column.sql_name, stored))
        cache_key = (target.name, tuple(sorted(conditions, key=lambda c: c[0])))
        if cache_key in self.lookups:
            found = self.lookups[cache_key]
        else:
            where = " AND ".join(f"{quote(c)} IS ?" for c, _ in conditions)
            rows = self.conn.execute(
                f"SELECT {quote(target.key.sql_name)} FROM {quote(target.name)} "
                f"WHERE {where} LIMIT 2",
                [v for _, v in conditions],
            ).fetchall()
            found = ("id", rows[0][0]) if len(rows) == 1 else ("count", len(rows))
            self.lookups[cache_key] = found
        kind, result = found
        if kind == "id":
            return True, result
        what = "no row" if result == 0 else "more than one row"
        self.problems.add(
            path,
            f"The lookup {_short(spec)} matches {what} of {target.name}; it must match exactly "
            "one row that existed before this request",
        )
        return False, None

    # - table writes -

    def table_write(self, index: int, item: Any) -> _TableWrite | None:
        base = f"tables[{index}]"
        if not isinstance(item, dict):
            self.problems.add(base, "A table write must be an object")
            return None
        name = item.get("table")
        table = self.catalog.resolve(name, core=None) if isinstance(name, str) else None
        if not isinstance(name, str) or not name:
            self.problems.add(f"{base}.table", "Field required: the table to write")
        elif table is None:
            self.problems.add(f"{base}.table", f"No table named {name!r}")
        elif table.platform:
            self.problems.add(
                f"{base}.table",
                f"{table.write_name} is a platform table, kept by its own routes; it cannot be "
                "written here",
            )
            table = None
        mode = item.get("mode") or "insert"
        if mode not in MODES:
            self.problems.add(f"{base}.mode", f"mode must be one of {', '.join(MODES)}")
        on_match = item.get("on_match") or "overwrite"
        if on_match not in ON_MATCH:
            self.problems.add(f"{base}.on_match", "on_match must be overwrite or fill_missing")
        cascade = item.get("cascade") or False
        if not isinstance(cascade, bool):
            self.problems.add(f"{base}.cascade", "cascade must be true or false")
        elif cascade and mode != "delete":
            self.problems.add(f"{base}.cascade", "cascade applies to mode delete only")
        rows = item.get("rows")
        if not isinstance(rows, list):
            self.problems.add(f"{base}.rows", "Field required: a list of row objects")
            rows = []
        if table is None or mode not in MODES:
            return None
        key = self.key_columns(table, item.get("key"), f"{base}.key", mode)
        if key is None:
            return None
        write = _TableWrite(index, table, mode, key, bool(cascade), on_match, [])
        for j, row in enumerate(rows):
            planned = self.row(write, j, row)
            if planned is not None:
                write.rows.append(planned)
        if mode == "insert":
            self.check_new(write)
        return write

    def key_columns(
        self, table: TableDef, key: Any, path: str, mode: str
    ) -> list[ColumnDef] | None:
        if key is None:
            return [table.key]
        if mode == "insert":
            self.problems.add(path, "key applies to modes upsert, update and delete")
            return None
        if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
            self.problems.add(path, "key must be a non-empty list of column names")
            return None
        columns: list[ColumnDef] = []
        for name in key:
            column = table.column(name)
            if column is None:
                self.problems.add(path, f"{table.name} has no column {name!r}")
                return None
            columns.append(column)
        return columns

    def row(self, write: _TableWrite, j: int, row: Any) -> _Row | None:
        table = write.table
        position = (write.index, j)
        if not isinstance(row, dict):
            self.problems.add(f"tables[{write.index}].rows[{j}]", "A row must be an object")
            return None
        before = len(self.problems)
        values: dict[str, Any] = {}
        given: set[str] = set()
        label: str | None = None
        columns = write.lookup
        deleting = write.mode == "delete"
        for name, raw in row.items():
            column = columns.get(name)
            if column is None:
                if name == "_ref":
                    label = self.define_label(write, raw, f"{_base(write, j)}._ref")
                else:
                    self.problems.add(
                        f"{_base(write, j)}.{name}", f"{table.name} has no column {name!r}"
                    )
                continue
            sql_name = column.sql_name
            if sql_name in given:
                self.problems.add(
                    f"{_base(write, j)}.{name}",
                    f"{column.name} is given twice (as {column.name} and {sql_name})",
                )
                continue
            given.add(sql_name)
            if deleting and column not in write.key:
                continue  # only the key matters to a delete
            if raw is None:
                values[sql_name] = None
                if not column.nullable and not deleting:
                    self.problems.add(f"{_base(write, j)}.{name}", f"{column.name} cannot be null")
            elif column.foreign_key is None:
                try:
                    values[sql_name] = write.encoders[sql_name](raw)
                except InvalidValue as exc:
                    self.problems.add(f"{_base(write, j)}.{name}", f"{column.name}: {exc}")
            else:
                ok, stored = self.reference(column, raw, f"{_base(write, j)}.{name}", position)
                if ok:
                    values[sql_name] = stored
        pk = table.key
        if write.mode == "insert":
            for column in write.required:
                if column.sql_name not in given:
                    self.problems.add(
                        f"{_base(write, j)}.{column.name}",
                        f"{column.name} is required (it is not nullable)",
                    )
        elif write.mode in ("update", "delete") or (write.mode == "upsert" and write.key != [pk]):
            for column in write.key:
                if column.sql_name not in given:
                    self.problems.add(
                        f"{_base(write, j)}.{column.name}",
                        f"The key column {column.name} is required to match the row "
                        f"(mode {write.mode})",
                    )
        if write.mode in ("insert", "upsert") and values.get(pk.sql_name) is not None:
            self.explicit.setdefault(table.name, {}).setdefault(values[pk.sql_name], position)
        if len(self.problems) > before:
            return None
        return _Row(j, values, label)

    def define_label(self, write: _TableWrite, raw: Any, path: str) -> str | None:
        if write.mode == "delete":
            self.problems.add(path, "_ref labels rows that are written, not deleted")
            return None
        if not isinstance(raw, str) or not raw or raw.startswith("@"):
            self.problems.add(path, "_ref must be a non-empty label (refer to it as @label)")
            return None
        if raw in self.labels:
            self.problems.add(path, f"The label {raw!r} is already defined by an earlier row")
            return None
        self.labels[raw] = write.table.name
        return raw

    def check_new(self, write: _TableWrite) -> None:
        """Inserted primary keys and unique values must not exist yet, nor repeat in the write."""
        table = write.table
        for column in table.columns:
            if not column.unique or column.foreign_key is not None:
                continue
            seen: dict[Any, int] = {}
            for row in write.rows:
                value = row.values.get(column.sql_name)
                if value is None or isinstance(value, Label):
                    continue
                if value in seen:
                    self.problems.add(
                        f"tables[{write.index}].rows[{row.index}].{column.name}",
                        f"{column.name} {value!r} repeats row {seen[value]} of this write; "
                        "it must be unique",
                    )
                else:
                    seen[value] = row.index
            for found in self._existing(table, column, list(seen)):
                self.problems.add(
                    f"tables[{write.index}].rows[{seen[found]}].{column.name}",
                    f"A row of {table.name} with {column.name} {found!r} already exists "
                    "(use mode upsert to update it)",
                )

    def _existing(self, table: TableDef, column: ColumnDef, values: list[Any]) -> list[Any]:
        found: list[Any] = []
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found += [
                r[0]
                for r in self.conn.execute(
                    f"SELECT {quote(column.sql_name)} FROM {quote(table.name)} "
                    f"WHERE {quote(column.sql_name)} IN ({marks})",
                    chunk,
                )
            ]
        return found

    def check_pending(self) -> None:
        """Check, in bulk, that every plain foreign-key id names a row."""
        by_target: dict[str, list[_Pending]] = {}
        for item in self.pending:
            by_target.setdefault(item.target, []).append(item)
        for target, items in by_target.items():
            table = self.catalog.tables[target]
            existing = set(self._existing(table, table.key, list({i.value for i in items})))
            inserted = self.explicit.get(target, {})
            for item in items:
                if item.value in existing:
                    continue
                at = inserted.get(item.value)
                if at is not None and at < item.position:
                    continue
                self.problems.add(item.path, f"No row of {target} has id {item.value!r}")

    # - series -

    def series(self, index: int, item: Any) -> _Series | None:
        base = f"series[{index}]"
        position = (1 << 30, index)
        if not isinstance(item, dict):
            self.problems.add(base, "A series must be an object")
            return None
        name = item.get("table")
        table = self.catalog.resolve(name, core=False) if isinstance(name, str) else None
        if table is None:
            self.problems.add(f"{base}.table", f"No table named {name!r}")
            return None
        if not table.is_raw:
            self.problems.add(
                f"{base}.table",
                f"{table.name} is not a raw table (semantic_category 'raw'); series are written "
                "to raw tables",
            )
            return None
        parent_column = self.parent_column(table, item.get("parent_column"), base)
        parent = item.get("parent")
        ok_parent = False
        resolved: Any = None
        if parent_column is not None:
            if parent is None:
                self.problems.add(f"{base}.parent", "Field required: the parent row")
            else:
                ok_parent, resolved = self.reference(
                    parent_column, parent, f"{base}.parent", position
                )
        columns = item.get("columns")
        if not isinstance(columns, dict) or not columns:
            self.problems.add(f"{base}.columns", "columns must map column names to lists")
            return None
        cols: list[ColumnDef] = []
        values: list[list[Any]] = []
        length: int | None = None
        for col_name, raw_values in columns.items():
            path = f"{base}.columns.{col_name}"
            column = table.column(col_name)
            if column is None:
                self.problems.add(path, f"{table.name} has no column {col_name!r}")
                continue
            if column.primary_key or column is parent_column:
                self.problems.add(path, f"{column.name} is filled by the server")
                continue
            if not isinstance(raw_values, list):
                self.problems.add(path, "Each column must be a list of values")
                continue
            if length is None:
                length = len(raw_values)
            elif len(raw_values) != length:
                self.problems.add(
                    path,
                    f"All columns must have the same length ({length}); this one has "
                    f"{len(raw_values)}",
                )
                continue
            stored_values: list[Any] = []
            for k, raw in enumerate(raw_values):
                ok, stored = self.value(column, raw, f"{path}[{k}]", position)
                if ok and stored is None and not column.nullable:
                    self.problems.add(f"{path}[{k}]", f"{column.name} cannot be null")
                stored_values.append(stored)
            cols.append(column)
            values.append(stored_values)
        given = {c.sql_name for c in cols}
        for column in table.columns:
            if (
                not column.nullable
                and not column.primary_key
                and column is not parent_column
                and column.name != "order"
                and column.sql_name not in given
            ):
                self.problems.add(f"{base}.columns.{column.name}", f"{column.name} is required")
        if parent_column is None or not ok_parent:
            return None
        return _Series(index, table, parent_column, resolved, cols, values, length or 0)

    def parent_column(self, table: TableDef, name: Any, base: str) -> ColumnDef | None:
        fks = table.foreign_keys
        if name is not None:
            column = table.column(name) if isinstance(name, str) else None
            if column is None or column.foreign_key is None:
                self.problems.add(
                    f"{base}.parent_column", f"{name!r} is not a foreign key of {table.name}"
                )
                return None
            return column
        if len(fks) == 1:
            return fks[0]
        self.problems.add(
            f"{base}.parent_column",
            f"{table.name} has several foreign keys ({', '.join(c.name for c in fks)}); "
            "say which one points at the parent",
        )
        return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- writing ---------------------------------------------------------------------------------


@attrs.define
class WriteOutcome:
    """What a write did: the response body, and the summary for the ledger."""

    response: dict[str, Any]
    summary: dict[str, Any]
    changed: bool


class _Writer:
    """Phase 2: apply the plan, in request order."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        catalog: Catalog,
        execution_id: str,
        return_rows: bool,
        labelled: bool = True,
    ) -> None:
        self.conn = conn
        self.labelled = labelled
        self.catalog = catalog
        self.execution_id = execution_id
        self.return_rows = return_rows
        self.problems = Problems()
        self.labels: dict[str, Any] = {}
        self.created: list[tuple[str, str, str]] = []
        self.created_here: set[tuple[str, Any]] = set()
        self.statements: dict[tuple[str, tuple[str, ...]], str] = {}

    def resolve(self, value: Any) -> Any:
        # A label whose row failed to write resolves to None; that row's problem rejects the
        # request anyway.
        return self.labels.get(value.name) if isinstance(value, Label) else value

    def values(self, row: _Row) -> dict[str, Any]:
        if not self.labelled:
            return row.values  # the request defines no label: nothing to resolve
        return {k: self.resolve(v) for k, v in row.values.items()}

    def match(self, table: TableDef, key: list[ColumnDef], values: dict[str, Any]) -> list[Any]:
        where = " AND ".join(
            f"{quote(c.sql_name)} IS ?"
            if values.get(c.sql_name) is None
            else f"{quote(c.sql_name)} = ?"
            for c in key
        )
        return [
            r[0]
            for r in self.conn.execute(
                f"SELECT {quote(table.key.sql_name)} FROM {quote(table.name)} "
                f"WHERE {where} LIMIT 2",
                [values.get(c.sql_name) for c in key],
            )
        ]

    def insert(self, table: TableDef, values: dict[str, Any], path: str) -> Any:
        pk = table.key
        if values.get(pk.sql_name) is None:
            values.pop(pk.sql_name, None)
            if pk.data_type == "text":
                values[pk.sql_name] = str(uuid.uuid4())
        names = tuple(values)
        sql = self.statements.get((table.name, names))
        if sql is None:
            sql = (
                f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
                f"VALUES ({', '.join('?' * len(names))})"
                if names
                else f"INSERT INTO {quote(table.name)} DEFAULT VALUES"
            )
            self.statements[(table.name, names)] = sql
        try:
            cur = self.conn.execute(sql, list(values.values()))
        except sqlite3.IntegrityError as exc:
            self.problems.add(path, f"The database refused the row: {exc}")
            return None
        row_id = values.get(pk.sql_name, cur.lastrowid)
        self.created.append((self.execution_id, table.name, str(row_id)))
        self.created_here.add((table.name, row_id))
        return row_id

    def update(
        self, table: TableDef, row_id: Any, values: dict[str, Any], on_match: str, path: str
    ) -> bool:
        sets = [c for c in values if c != table.key.sql_name]
        if not sets:
            return True
        if on_match == "fill_missing":
            assignments = ", ".join(f"{quote(c)} = COALESCE({quote(c)}, ?)" for c in sets)
        else:
            assignments = ", ".join(f"{quote(c)} = ?" for c in sets)
        try:
            self.conn.execute(
                f"UPDATE {quote(table.name)} SET {assignments} "
                f"WHERE {quote(table.key.sql_name)} = ?",
                [values[c] for c in sets] + [row_id],
            )
        except sqlite3.IntegrityError as exc:
            self.problems.add(path, f"The database refused the update: {exc}")
            return False
        return True

    def fetch(self, table: TableDef, row_id: Any) -> dict[str, Any] | None:
        columns = ", ".join(quote(c.sql_name) for c in table.columns)
        row = self.conn.execute(
            f"SELECT {columns} FROM {quote(table.name)} WHERE {quote(table.key.sql_name)} = ?",
            (row_id,),
        ).fetchone()
        return decoder(table.columns)(row) if row is not None else None

    def table_write(self, write: _TableWrite) -> dict[str, Any]:
        table = write.table
        created = updated = deleted = 0
        cascaded: dict[str, int] = {}
        ids: list[str] = []
        rows_out: list[dict[str, Any]] = []
        for row in write.rows:
            path = f"tables[{write.index}].rows[{row.index}]"
            values = self.values(row)
            row_id: Any = None
            if write.mode == "insert":
                row_id = self.insert(table, values, path)
                created += row_id is not None
            else:
                has_key = all(c.sql_name in values for c in write.key)
                matches = self.match(table, write.key, values) if has_key else []
                if len(matches) > 1:
                    self.problems.add(
                        path,
                        f"The key ({', '.join(c.name for c in write.key)}) matches more than "
                        f"one row of {table.name}",
                    )
                    continue
                if not matches and write.mode == "upsert":
                    missing = [
                        c.name
                        for c in table.columns
                        if not c.nullable and not c.primary_key and c.sql_name not in values
                    ]
                    if missing:
                        self.problems.add(
                            path,
                            f"No row matches, so this row is inserted, but it lacks required "
                            f"column(s) {', '.join(missing)}",
                        )
                        continue
                    row_id = self.insert(table, values, path)
                    created += row_id is not None
                elif not matches:
                    self.problems.add(
                        path,
                        f"No row of {table.name} matches the key "
                        f"({', '.join(f'{c.name}={values.get(c.sql_name)!r}' for c in write.key)})",
                    )
                    continue
                elif write.mode == "delete":
                    row_id = matches[0]
                    if self.return_rows:
                        rows_out.append(self.fetch(table, row_id) or {})
                    counts, blocked = delete_rows(
                        self.conn, self.catalog, table, [row_id], cascade=write.cascade
                    )
                    if blocked:
                        self.problems.add(
                            path,
                            f"The row is referenced by {'; '.join(blocked)}; set cascade "
                            "to delete those rows too",
                        )
                        continue
                    deleted += 1
                    for name, count in counts.items():
                        if name != table.name:
                            cascaded[name] = cascaded.get(name, 0) + count
                else:
                    row_id = matches[0]
                    if self.update(table, row_id, values, write.on_match, path):
                        updated += 1
                    else:
                        row_id = None
            if row_id is None:
                continue
            if row.label is not None:
                self.labels[row.label] = row_id
            ids.append(str(row_id))
            if self.return_rows and write.mode != "delete":
                rows_out.append(self.fetch(table, row_id) or {})
        return {
            "table": table.name,
            "created": created,
            "updated": updated,
            "deleted": deleted,
            "cascade_deleted": cascaded if write.mode == "delete" else None,
            "ids": ids,
            "rows": rows_out if self.return_rows else None,
        }

    def series(self, item: _Series) -> tuple[dict[str, Any], bool]:
        table = item.table
        parent_id = self.resolve(item.parent)
        parent_table = item.parent_column.foreign_key or ""
        fk = quote(item.parent_column.sql_name)
        old_ids = [
            r[0]
            for r in self.conn.execute(
                f"SELECT {quote(table.key.sql_name)} FROM {quote(table.name)} WHERE {fk} = ?",
                (parent_id,),
            )
        ]
        if old_ids:
            delete_rows(self.conn, self.catalog, table, old_ids, cascade=True)
        names = [item.parent_column.sql_name] + [c.sql_name for c in item.columns]
        columns = list(item.values)
        if "order" not in names and table.column("order") is not None:
            names.append("order")
            columns.append(list(range(item.length)))
        pk = table.key
        if pk.data_type == "text":
            names.append(pk.sql_name)
            columns.append([str(uuid.uuid4()) for _ in range(item.length)])
        resolved = [[self.resolve(v) for v in col] for col in columns]
        rows = zip([parent_id] * item.length, *resolved, strict=True)
        try:
            self.conn.executemany(
                f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, names))}) "
                f"VALUES ({', '.join('?' * len(names))})",
                rows,
            )
        except sqlite3.IntegrityError as exc:
            self.problems.add(f"series[{item.index}]", f"The database refused a point: {exc}")
        parent_created = (parent_table, parent_id) in self.created_here or (
            self.conn.execute(
                "SELECT 1 FROM _labric_created WHERE execution_id = ? AND table_name = ? "
                "AND row_id = ?",
                (self.execution_id, parent_table, str(parent_id)),
            ).fetchone()
            is not None
        )
        result = {
            "table": table.name,
            "parent_id": str(parent_id),
            "points_written": item.length,
            "points_replaced": len(old_ids),
        }
        return result, parent_created


def delete_rows(
    conn: sqlite3.Connection,
    catalog: Catalog,
    table: TableDef,
    ids: list[Any],
    *,
    cascade: bool,
) -> tuple[dict[str, int], list[str]]:
    """Delete rows with the rows that depend on them.

    Rows of raw tables referencing a deleted row always go too; rows of other tables only with
    ``cascade``; without it, any such row blocks the delete and nothing is deleted.

    Returns:
        Rows deleted per table (``table`` itself included), and what blocked the delete (empty
        when it happened).
    """
    plan: list[tuple[TableDef, list[Any]]] = []
    seen: dict[str, set[Any]] = {}
    blocked: list[str] = []

    def collect(current: TableDef, wanted: list[Any]) -> None:
        done = seen.setdefault(current.name, set())
        fresh = [i for i in wanted if i not in done]
        if not fresh:
            return
        done.update(fresh)
        for other, column in catalog.referrers(current.name):
            children: list[Any] = []
            for start in range(0, len(fresh), _CHUNK):
                chunk = fresh[start : start + _CHUNK]
                children += [
                    r[0]
                    for r in conn.execute(
                        f"SELECT {quote(other.key.sql_name)} FROM {quote(other.name)} "
                        f"WHERE {quote(column.sql_name)} IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                ]
            if not children:
                continue
            if other.is_raw or cascade:
                collect(other, children)
            else:
                blocked.append(f"{len(children)} row(s) of {other.name} (column {column.name})")
        plan.append((current, fresh))

    collect(table, ids)
    if blocked:
        return {}, blocked
    counts: dict[str, int] = {}
    for current, doomed in plan:
        key = quote(current.key.sql_name)
        for start in range(0, len(doomed), _CHUNK):
            chunk = doomed[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM {quote(current.name)} WHERE {key} IN ({marks})", chunk)
            conn.execute(
                f"DELETE FROM core_experiment_row WHERE table_name = ? AND row_id IN ({marks})",
                [current.name, *map(str, chunk)],
            )
        counts[current.name] = counts.get(current.name, 0) + len(doomed)
    return counts, []


def apply_write(
    conn: sqlite3.Connection,
    catalog: Catalog,
    body: Mapping[str, Any],
    *,
    execution_id: str,
    problems: Iterable[tuple[str | None, str]] = (),
) -> WriteOutcome:
    """Validate and apply one ``data/write`` request inside the caller's transaction.

    Args:
        conn: The organisation's connection, inside a write transaction.
        catalog: The organisation's tables.
        body: The decoded request.
        execution_id: The execution the created rows are recorded under.
        problems: Problems the caller already found (e.g. an unknown execution), reported with
            the others.

    Raises:
        Rejected: validation or writing found problems; the caller rolls back.
    """
    planner = _Planner(conn, catalog)
    for path, message in problems:
        planner.problems.add(path, message)
    tables = body.get("tables")
    series = body.get("series")
    if tables is not None and not isinstance(tables, list):
        planner.problems.add("tables", "tables must be a list of table writes")
        tables = None
    if series is not None and not isinstance(series, list):
        planner.problems.add("series", "series must be a list of series writes")
        series = None
    for name in ("dry_run", "return_rows"):
        if body.get(name) is not None and not isinstance(body.get(name), bool):
            planner.problems.add(name, f"{name} must be true or false")
    writes = [planner.table_write(i, item) for i, item in enumerate(tables or [])]
    all_series = [planner.series(i, item) for i, item in enumerate(series or [])]
    planner.check_pending()
    if planner.problems:
        raise Rejected(planner.problems)

    writer = _Writer(
        conn, catalog, execution_id, bool(body.get("return_rows")), labelled=bool(planner.labels)
    )
    table_results: list[dict[str, Any]] = []
    summary_tables: list[dict[str, Any]] = []
    for write in writes:
        assert write is not None
        result = writer.table_write(write)
        if writer.problems:
            raise Rejected(writer.problems)
        table_results.append(result)
        summary_tables.append(
            {
                "table": result["table"],
                "mode": write.mode,
                "created": result["created"],
                "updated": result["updated"],
                "deleted": result["deleted"],
                "cascade_deleted": result["cascade_deleted"] or {},
            }
        )
    series_results: list[dict[str, Any]] = []
    summary_series: dict[str, dict[str, int]] = {}
    for item in all_series:
        assert item is not None
        result, parent_created = writer.series(item)
        if writer.problems:
            raise Rejected(writer.problems)
        series_results.append(result)
        entry = summary_series.setdefault(
            item.table.name,
            {"parents": 0, "parents_not_created": 0, "points_written": 0, "points_replaced": 0},
        )
        entry["parents"] += 1
        entry["parents_not_created"] += not parent_created
        entry["points_written"] += result["points_written"]
        entry["points_replaced"] += result["points_replaced"]
    if writer.created:
        conn.executemany(
            "INSERT INTO _labric_created (execution_id, table_name, row_id) VALUES (?, ?, ?)",
            writer.created,
        )
    refs = {label: str(writer.labels[label]) for label in planner.labels if label in writer.labels}
    response = {
        "job_execution_id": None,
        "tables": table_results,
        "series": series_results,
        "refs": refs,
    }
    summary = {
        "tables": summary_tables,
        "series": [{"table": name, **counts} for name, counts in summary_series.items()],
    }
    changed = bool(writes or all_series)
    return WriteOutcome(response=response, summary=summary, changed=changed)


# -- revert ----------------------------------------------------------------------------------


@attrs.define
class RevertOutcome:
    """What reverting one execution's rows did."""

    deleted: int = 0
    raws_deleted: int = 0
    skipped: int = 0
    gone: int = 0
    kept: dict[str, int] = attrs.field(factory=dict)


def revert(conn: sqlite3.Connection, catalog: Catalog, execution_id: str) -> RevertOutcome:
    """Delete the rows an execution created, newest first, with their series.

    A created row that rows written later by others still reference is kept (and counted as
    skipped); so is one that no longer exists. The execution's record of created rows is then
    cleared, so reverting again does nothing.
    """
    outcome = RevertOutcome()
    created = conn.execute(
        "SELECT table_name, row_id FROM _labric_created WHERE execution_id = ? ORDER BY seq DESC",
        (execution_id,),
    ).fetchall()
    for table_name, raw_id in created:
        table = catalog.tables.get(table_name)
        if table is None or table.pk is None:
            outcome.skipped += 1
            outcome.gone += 1
            continue
        row_id: Any = int(raw_id) if table.key.data_type == "integer" else raw_id
        exists = conn.execute(
            f"SELECT 1 FROM {quote(table.name)} WHERE {quote(table.key.sql_name)} = ?",
            (row_id,),
        ).fetchone()
        if exists is None:
            outcome.skipped += 1
            outcome.gone += 1
            continue
        counts, blocked = delete_rows(conn, catalog, table, [row_id], cascade=False)
        if blocked:
            outcome.skipped += 1
            outcome.kept[table.name] = outcome.kept.get(table.name, 0) + 1
            continue
        outcome.deleted += 1
        outcome.raws_deleted += sum(n for name, n in counts.items() if name != table.name)
    conn.execute("DELETE FROM _labric_created WHERE execution_id = ?", (execution_id,))
    return outcome

"""Phase 1 of ``data/write``: validate a whole request and plan its writes before any is made.

See :mod:`labric.server.datasets.write` for what a request may hold; :class:`Planner` checks all
of it, collecting every problem (:class:`Problems`), and hands the writer a plan of resolved
rows and series.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from labric.server.datasets.schema import Catalog, ColumnDef, InvalidValue, TableDef, encoder, quote

__all__ = [
    "DEFAULT_FUNCTIONS",
    "MAX_BODY_BYTES",
    "MAX_PROBLEMS",
    "MAX_ROWS",
    "MAX_SERIES_VALUES",
    "MODES",
    "ON_MATCH",
    "SQL_CHUNK",
    "Label",
    "PlannedRow",
    "PlannedSeries",
    "Planner",
    "Problems",
    "Rejected",
    "TableWrite",
    "TooLarge",
    "check_size",
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
#: Values per ``IN (...)`` list, well under SQLite's limit on bound parameters.
SQL_CHUNK = 500


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: The default functions ``tools/write`` may name, each giving a column's value for a new row.
DEFAULT_FUNCTIONS: dict[str, Callable[[], Any]] = {
    "DATETIME_NOW": _now,
    "UUID4": lambda: str(uuid.uuid4()),
}


def _filler(make: Callable[[], Any], encode: Callable[[Any], Any]) -> Callable[[], Any]:
    return lambda: encode(make())


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


@attrs.frozen
class Label:
    """A ``@label`` reference, resolved to an id while writing."""

    name: str


@attrs.define
class PlannedRow:
    index: int
    values: dict[str, Any]  # sql column -> stored value or Label
    label: str | None


@attrs.define
class TableWrite:
    index: int
    table: TableDef
    mode: str
    key: list[ColumnDef]
    cascade: bool
    on_match: str
    rows: list[PlannedRow]
    #: Column (SQL name) -> a function giving its value for a row inserted without one.
    defaults: Mapping[str, Callable[[], Any]] = attrs.field(factory=dict)
    # Per-write lookups, so the per-row loop does no repeated work.
    lookup: dict[str, ColumnDef] = attrs.field(init=False)
    encoders: dict[str, Any] = attrs.field(init=False)
    required: list[ColumnDef] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.lookup = {**self.table.by_sql_name, **self.table.by_name}
        self.encoders = {
            c.sql_name: encoder(c.data_type) for c in self.table.columns if not c.foreign_key
        }
        self.required = [
            c
            for c in self.table.columns
            if not c.nullable and not c.primary_key and c.sql_name not in self.defaults
        ]


def _base(write: TableWrite, j: int) -> str:
    return f"tables[{write.index}].rows[{j}]"


@attrs.define
class PlannedSeries:
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


class Planner:
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

    def table_write(
        self, index: int, item: Any, defaults: Mapping[str, Any] | None = None
    ) -> TableWrite | None:
        """Plan one table write.

        Args:
            index: Its position in the request.
            item: The table write as sent.
            defaults: Column -> default function name (``DATETIME_NOW``, ``UUID4``) for the
                rows it inserts (the deprecated ``tools/write``'s ``defaults``).
        """
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
        elif table.read_only is not None:
            self.problems.add(f"{base}.table", f"{table.write_name} {table.read_only}")
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
        functions = self.default_functions(table, defaults or {}, f"{base}.defaults")
        if functions is None:
            return None
        write = TableWrite(index, table, mode, key, bool(cascade), on_match, [], functions)
        for j, row in enumerate(rows):
            planned = self.row(write, j, row)
            if planned is not None:
                write.rows.append(planned)
        if mode == "insert":
            self.check_new(write)
        return write

    def default_functions(
        self, table: TableDef, defaults: Mapping[str, Any], path: str
    ) -> dict[str, Callable[[], Any]] | None:
        """Column (SQL name) -> the function filling it, each checked against the column."""
        functions: dict[str, Callable[[], Any]] = {}
        ok = True
        for name, function_name in defaults.items():
            if function_name is None:
                continue
            column = table.column(name)
            make = DEFAULT_FUNCTIONS.get(function_name) if isinstance(function_name, str) else None
            if column is None:
                self.problems.add(f"{path}.{name}", f"{table.name} has no column {name!r}")
            elif make is None:
                self.problems.add(
                    f"{path}.{name}",
                    f"Unknown default function {function_name!r}; use one of "
                    f"{', '.join(DEFAULT_FUNCTIONS)}",
                )
            elif column.foreign_key is not None:
                self.problems.add(f"{path}.{name}", f"{column.name} is a foreign key")
            else:
                encode = encoder(column.data_type)
                try:
                    encode(make())
                except InvalidValue as exc:
                    self.problems.add(
                        f"{path}.{name}", f"{function_name} cannot fill {column.name}: {exc}"
                    )
                else:
                    functions[column.sql_name] = _filler(make, encode)
                    continue
            ok = False
        return functions if ok else None

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

    def row(self, write: TableWrite, j: int, row: Any) -> PlannedRow | None:
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
        return PlannedRow(j, values, label)

    def define_label(self, write: TableWrite, raw: Any, path: str) -> str | None:
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

    def check_new(self, write: TableWrite) -> None:
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
        for start in range(0, len(values), SQL_CHUNK):
            chunk = values[start : start + SQL_CHUNK]
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

    def series(self, index: int, item: Any) -> PlannedSeries | None:
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
        return PlannedSeries(index, table, parent_column, resolved, cols, values, length or 0)

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

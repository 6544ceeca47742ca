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

Phase 1 is :mod:`labric.server.datasets.validate`; this module makes the writes (phase 2) and
reverts them.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from labric.server.datasets.schema import (
    Catalog,
    ColumnDef,
    TableDef,
    decoder,
    quote,
)
from labric.server.datasets.validate import (
    SQL_CHUNK,
    Label,
    PlannedRow,
    PlannedSeries,
    Planner,
    Problems,
    Rejected,
    TableWrite,
)

__all__ = ["RevertOutcome", "WriteOutcome", "apply_write", "delete_rows", "revert"]


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

    def values(self, row: PlannedRow) -> dict[str, Any]:
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

    def insert(
        self,
        table: TableDef,
        values: dict[str, Any],
        path: str,
        defaults: Mapping[str, Callable[[], Any]] | None = None,
    ) -> Any:
        pk = table.key
        for name, make in (defaults or {}).items():
            if values.get(name) is None:
                values[name] = make()
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

    def table_write(self, write: TableWrite) -> dict[str, Any]:
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
                row_id = self.insert(table, values, path, write.defaults)
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
                        if not c.nullable
                        and not c.primary_key
                        and c.sql_name not in values
                        and c.sql_name not in write.defaults
                    ]
                    if missing:
                        self.problems.add(
                            path,
                            f"No row matches, so this row is inserted, but it lacks required "
                            f"column(s) {', '.join(missing)}",
                        )
                        continue
                    row_id = self.insert(table, values, path, write.defaults)
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

    def series(self, item: PlannedSeries) -> tuple[dict[str, Any], bool]:
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
            for start in range(0, len(fresh), SQL_CHUNK):
                chunk = fresh[start : start + SQL_CHUNK]
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
        for start in range(0, len(doomed), SQL_CHUNK):
            chunk = doomed[start : start + SQL_CHUNK]
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
    defaults: Mapping[int, Mapping[str, Any]] | None = None,
) -> WriteOutcome:
    """Validate and apply one ``data/write`` request inside the caller's transaction.

    Args:
        conn: The organisation's connection, inside a write transaction.
        catalog: The organisation's tables.
        body: The decoded request.
        execution_id: The execution the created rows are recorded under.
        problems: Problems the caller already found (e.g. an unknown execution), reported with
            the others.
        defaults: Table write index -> column -> default function name, for the rows that
            write inserts (the deprecated ``tools/write``'s ``defaults``).

    Raises:
        Rejected: validation or writing found problems; the caller rolls back.
    """
    planner = Planner(conn, catalog)
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
    writes = [
        planner.table_write(i, item, (defaults or {}).get(i)) for i, item in enumerate(tables or [])
    ]
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

"""Where dataset rows live: one SQLite file per organisation, each with its own writer thread.

Layout
    ``<data_dir>/datasets/<org_id>.sqlite3`` (WAL) holds an organisation's tables, the platform
    tables (``core_experiment``, ``core_instrument``, ``core_experiment_row``), the table
    definitions (``_labric_tables``, ``_labric_columns``) and the record of which rows each job
    execution created (``_labric_created``, for revert). Keeping each organisation in its own file
    makes the SQL boundary physical: a query's connection opens one file, and the server's keys,
    files and other organisations are simply not in it (see :mod:`.boundary`). The tables that
    describe the organisation (``core_organization``, ``core_user``, ...) are copied from the
    server's records each time the file is opened (see ``describe``).

Threads
    Each open organisation has one writer thread owning its one read-write connection; writes
    run there one at a time, each in a ``BEGIN IMMEDIATE`` transaction, so a write request is
    atomic and sees a consistent database from validation to commit. Reads (``tools/read``,
    ``tools/query``, the schema) run on a small shared pool of reader threads, each on a fresh
    read-only connection; WAL lets them proceed while a write is in progress. Nothing blocks the
    event loop.

Contention
    A write waits at most ``lock_timeout`` seconds for the organisation's writer (other writes of
    this process ahead of it, or another process holding the file's write lock); past that it
    fails with :class:`Busy` (answered 429 with ``Retry-After``) and nothing is written.

Platform API
    The experiments and instruments routes keep the platform tables current through
    :meth:`DatasetStore.upsert_platform_row` and :meth:`DatasetStore.delete_platform_row`; links
    from experiments to dataset rows go through :meth:`DatasetStore.link_experiment_rows`; and
    dashboards evaluate SQL under the boundary with :meth:`DatasetStore.run_readonly_query`. Each
    is one transaction on the organisation's file; the caller's own records live in the main
    database, so a caller that must keep both in step should make its platform-table call
    idempotent (an upsert can simply be repeated).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs

from labric.server.datasets import schema
from labric.server.datasets.boundary import (
    QueryLimits,
    QueryOutcome,
    open_readonly,
    run_readonly,
)
from labric.server.datasets.schema import (
    PLATFORM_TABLES,
    Catalog,
    ColumnDef,
    InvalidValue,
    TableDef,
    encode_value,
    quote,
)

__all__ = [
    "Busy",
    "DatasetLimits",
    "DatasetStore",
    "Describe",
    "OrgDatabase",
    "OrgDescription",
    "OrgMember",
    "PlatformRowInUse",
]

T = TypeVar("T")

_ORG_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The version of the per-organisation file layout (``PRAGMA user_version``): 2 added the
#: platform tables describing the organisation and its process steps.
FILE_VERSION = 2
_META_DDL = """
CREATE TABLE _labric_tables (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL UNIQUE,
    description        TEXT,
    semantic_category  TEXT NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE TABLE _labric_columns (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    table_id        INTEGER NOT NULL REFERENCES _labric_tables(id),
    position        INTEGER NOT NULL,
    name            TEXT NOT NULL,
    sql_name        TEXT NOT NULL,
    data_type       TEXT NOT NULL,
    is_primary_key  INTEGER NOT NULL,
    is_nullable     INTEGER NOT NULL,
    is_unique       INTEGER NOT NULL,
    foreign_key     TEXT,
    description     TEXT,
    UNIQUE (table_id, name)
);
-- Rows each job execution created, in creation order (revert deletes them newest first).
CREATE TABLE _labric_created (
    seq           INTEGER PRIMARY KEY,
    execution_id  TEXT NOT NULL,
    table_name    TEXT NOT NULL,
    row_id        TEXT NOT NULL
);
CREATE INDEX _labric_created_execution ON _labric_created(execution_id, table_name, row_id);
"""


@attrs.frozen(kw_only=True)
class OrgMember:
    """A person of an organisation, as ``core_user`` and ``core_organizationmember`` show it."""

    id: str
    name: str
    email: str | None = None
    role: str = "admin"
    joined: str


@attrs.frozen(kw_only=True)
class OrgDescription:
    """What the organisation-describing platform tables hold about an organisation."""

    name: str
    created_at: str
    members: tuple[OrgMember, ...] = ()


#: Looks an organisation up when its file is opened (``None``: an unknown organisation).
Describe = Callable[[str], Awaitable[OrgDescription | None]]


def _describe_rows(conn: sqlite3.Connection, org_id: str, about: OrgDescription) -> None:
    """Bring ``core_organization``, ``core_user`` and ``core_organizationmember`` up to date."""
    conn.execute(
        "INSERT INTO core_organization (id, name, date_created) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        (org_id, about.name, about.created_at),
    )
    for member in about.members:
        conn.execute(
            "INSERT INTO core_user (id, name, email, date_joined) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email",
            (member.id, member.name, member.email, member.joined),
        )
        conn.execute(
            "INSERT INTO core_organizationmember (id, organization_id, user_id, role, "
            "date_created) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "role = excluded.role",
            (f"{org_id}:{member.id}", org_id, member.id, member.role, member.joined),
        )


class Busy(Exception):
    """The organisation's database stayed locked by other writers for too long."""


class PlatformRowInUse(Exception):
    """A platform row cannot be deleted: organisation rows reference it through a required key."""


@attrs.frozen(kw_only=True)
class DatasetLimits:
    """Tunable limits of the dataset routes (``PUT /v1/admin/datasets/limits`` changes them).

    Attributes:
        query_timeout: Seconds a ``tools/query`` statement may run.
        max_query_rows: The most rows a query result may have.
        max_query_bytes: The most bytes (estimated as JSON) a query result may take.
        lock_timeout: Seconds a write waits for the organisation's database before 429.
    """

    query_timeout: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    max_query_rows: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))
    max_query_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=attrs.validators.ge(1))
    lock_timeout: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))

    @property
    def query(self) -> QueryLimits:
        """The limits of one query."""
        return QueryLimits(
            timeout=self.query_timeout, max_rows=self.max_query_rows, max_bytes=self.max_query_bytes
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_catalog(conn: sqlite3.Connection) -> Catalog:
    """Read the table definitions of an organisation's file."""
    columns: dict[int, list[ColumnDef]] = {}
    for row in conn.execute(
        "SELECT id, table_id, name, sql_name, data_type, is_primary_key, is_nullable, is_unique, "
        "foreign_key, description FROM _labric_columns ORDER BY table_id, position"
    ):
        columns.setdefault(row[1], []).append(
            ColumnDef(
                id=row[0],
                name=row[2],
                sql_name=row[3],
                data_type=row[4],
                primary_key=bool(row[5]),
                nullable=bool(row[6]),
                unique=bool(row[7]),
                foreign_key=row[8],
                description=row[9],
            )
        )
    tables: dict[str, TableDef] = {}
    for row in conn.execute(
        "SELECT id, name, description, semantic_category FROM _labric_tables ORDER BY id"
    ):
        tables[row[1]] = TableDef(
            id=row[0],
            name=row[1],
            write_name=row[1],
            description=row[2],
            semantic_category=row[3],
            columns=tuple(columns.get(row[0], ())),
        )
    tables.update(PLATFORM_TABLES)
    return Catalog(tables)


def table_ddl(table: TableDef) -> list[str]:
    """``CREATE TABLE`` (STRICT) and its indexes for an organisation table."""
    parts: list[str] = []
    for column in table.columns:
        sql = f"{quote(column.sql_name)} {schema.SQL_TYPES[column.data_type]}"
        if column.primary_key:
            sql += " PRIMARY KEY"
            if column.data_type == "integer":
                sql += " AUTOINCREMENT"
            else:
                sql += " NOT NULL"
        else:
            if not column.nullable:
                sql += " NOT NULL"
            if column.unique:
                sql += " UNIQUE"
        if column.foreign_key is not None:
            sql += f" REFERENCES {quote(column.foreign_key)}"
        parts.append(sql)
    statements = [
        f"CREATE TABLE {quote(table.name)} (\n    " + ",\n    ".join(parts) + "\n) STRICT"
    ]
    for column in table.foreign_keys:
        index = f"{table.name}__{column.sql_name}"
        on = quote(column.sql_name)
        if table.is_raw and column.foreign_key is not None:
            on += ', "order"'
        statements.append(f"CREATE INDEX {quote(index)} ON {quote(table.name)} ({on})")
    return statements


def insert_definition(conn: sqlite3.Connection, table: TableDef, now: str) -> TableDef:
    """Create an organisation table and record its definition; return it with its ids."""
    for statement in table_ddl(table):
        conn.execute(statement)
    cur = conn.execute(
        "INSERT INTO _labric_tables (name, description, semantic_category, created_at) "
        "VALUES (?, ?, ?, ?)",
        (table.name, table.description, table.semantic_category, now),
    )
    table_id = cur.lastrowid
    conn.execute(
        "INSERT INTO core_table (id, name, description, semantic_category, date_created) "
        "VALUES (?, ?, ?, ?, ?)",
        (table_id, table.name, table.description, table.semantic_category, now),
    )
    stored: list[ColumnDef] = []
    for position, column in enumerate(table.columns):
        cur = conn.execute(
            "INSERT INTO _labric_columns (table_id, position, name, sql_name, data_type, "
            "is_primary_key, is_nullable, is_unique, foreign_key, description) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                table_id,
                position,
                column.name,
                column.sql_name,
                column.data_type,
                int(column.primary_key),
                int(column.nullable),
                int(column.unique),
                column.foreign_key,
                column.description,
            ),
        )
        stored.append(attrs.evolve(column, id=cur.lastrowid))
    return attrs.evolve(table, id=table_id, columns=tuple(stored))


def _initialise(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > FILE_VERSION:
        raise RuntimeError(
            f"The dataset file is at version {version}, newer than this release knows "
            f"({FILE_VERSION}); upgrade labric to use this data directory"
        )
    if version == FILE_VERSION:
        return
    # Each step, version bump included, is one transaction; a file at version 1 gets step 2.
    steps = {1: f"{_META_DDL}\n{schema.PLATFORM_DDL}", 2: schema.PLATFORM_DDL_V2}
    for target in range(version + 1, FILE_VERSION + 1):
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{steps[target]}\nPRAGMA user_version = {target};\nCOMMIT;"
        )


class OrgDatabase:
    """One organisation's dataset file: its writer thread and connection, and its catalog.

    Create it through :meth:`DatasetStore.org`.
    """

    def __init__(self, store: DatasetStore, org_id: str, path: Path) -> None:
        self.store = store
        self.org_id = org_id
        self.path = path
        self.catalog = Catalog({})
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<OrgDatabase {self.org_id}>"

    def _open_sync(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            _initialise(conn)
            self.catalog = load_catalog(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def open(self) -> None:
        """Create or open the file (and its tables) on a new writer thread."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="labric-datasets-write")
        try:
            await asyncio.wrap_future(executor.submit(self._open_sync))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor

    def close_sync(self) -> None:
        """Wait for the write in progress, close the connection and stop the thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        try:
            executor.submit(close).result()
        finally:
            executor.shutdown(wait=True)

    def _transaction(
        self, fn: Callable[..., T], args: tuple[Any, ...], rollback: bool, lock_timeout: float
    ) -> T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("The dataset database is closed")
        conn.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Busy(str(exc)) from None
            raise
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("ROLLBACK" if rollback else "COMMIT")
        return result

    async def write(
        self,
        fn: Callable[..., T],
        *args: Any,
        rollback: bool = False,
        after: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn(conn, *args)`` in one write transaction on the writer thread.

        Args:
            fn: The work; an exception rolls everything back and propagates.
            rollback: Roll back even when ``fn`` succeeds (a dry run).
            after: Called with the result once committed, while no other write can start (to
                update the in-memory catalog, say).

        Raises:
            Busy: the database stayed locked for longer than the lock timeout.
        """
        executor = self._executor
        if executor is None:
            raise RuntimeError("The dataset database is closed")
        lock_timeout = self.store.limits.lock_timeout
        try:
            async with asyncio.timeout(lock_timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise Busy("other writes held the organisation's database") from None
        try:
            future = executor.submit(self._transaction, fn, args, rollback, lock_timeout)
            result = await asyncio.wrap_future(future)
            if after is not None:
                after(result)
            return result
        finally:
            self._lock.release()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a reader thread, on a read-only snapshot of the file."""

        def run() -> T:
            conn = open_readonly(self.path)
            try:
                conn.execute("BEGIN")
                return fn(conn, *args)
            finally:
                conn.close()

        return await self.store.on_reader(run)

    async def query(
        self, sql: str, params: Sequence[Any], limits: QueryLimits | None = None
    ) -> QueryOutcome:
        """Run caller-written SQL under the boundary (see :mod:`.boundary`).

        Raises:
            QueryError: the query was refused, failed, or went over a limit.
        """
        chosen = limits or self.store.limits.query
        return await self.store.on_reader(run_readonly, self.path, sql, list(params), chosen)


class DatasetStore:
    """Every organisation's dataset file under one directory, opened on first use.

    Args:
        root: The directory holding ``<org_id>.sqlite3`` files (created if missing).
        limits: The initial limits (replace :attr:`limits` to change them).
        readers: Threads running reads and queries, shared by all organisations.
        describe: Looks an organisation up, so that opening its file brings the tables that
            describe it (``core_organization``, ``core_user``, ...) up to date.
    """

    def __init__(
        self,
        root: Path,
        limits: DatasetLimits | None = None,
        *,
        readers: int = 4,
        describe: Describe | None = None,
    ):
        self.root = root
        self._describe = describe
        self.limits = limits or DatasetLimits()
        self._orgs: dict[str, OrgDatabase] = {}
        self._opening: dict[str, asyncio.Task[OrgDatabase]] = {}
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="labric-datasets-read")
        self._closed = False
        self._close_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<DatasetStore {self.root}>"

    def path_of(self, org_id: str) -> Path:
        """The dataset file of an organisation."""
        if not _ORG_ID.match(org_id):
            raise ValueError(f"not an organisation id: {org_id!r}")
        return self.root / f"{org_id}.sqlite3"

    async def org(self, org_id: str) -> OrgDatabase:
        """The organisation's open database, created with its platform tables on first use."""
        found = self._orgs.get(org_id)
        if found is not None:
            return found
        if self._closed:
            raise RuntimeError("The dataset store is closed")
        task = self._opening.get(org_id)
        if task is None:
            task = asyncio.ensure_future(self._open(org_id))
            self._opening[org_id] = task
        return await asyncio.shield(task)

    async def _open(self, org_id: str) -> OrgDatabase:
        try:
            path = self.path_of(org_id)
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
            org = OrgDatabase(self, org_id, path)
            await org.open()
            try:
                about = await self._describe(org_id) if self._describe is not None else None
                if about is not None:
                    await org.write(_describe_rows, org_id, about)
            except BaseException:
                await asyncio.to_thread(org.close_sync)
                raise
            self._orgs[org_id] = org
            return org
        finally:
            self._opening.pop(org_id, None)

    async def on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking read work on the reader pool."""
        return await asyncio.wrap_future(self._readers.submit(fn, *args))

    def close_sync(self) -> None:
        """Close every organisation's file and stop the threads (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            orgs, self._orgs = list(self._orgs.values()), {}
        try:
            for org in orgs:
                org.close_sync()
        finally:
            self._readers.shutdown(wait=True)

    async def close(self) -> None:
        """Like :meth:`close_sync`, without blocking the event loop."""
        for task in list(self._opening.values()):
            with contextlib.suppress(Exception):
                await task
        await asyncio.to_thread(self.close_sync)

    # -- the platform API ------------------------------------------------------------------

    async def upsert_platform_row(self, org_id: str, table: str, row: Mapping[str, Any]) -> None:
        """Create or replace one row of a platform table (``experiment`` or ``instrument``).

        Args:
            org_id: The organisation.
            table: ``"experiment"`` or ``"instrument"`` (or their SQL names).
            row: Column name -> JSON value; ``id`` is required. Columns left out are set to
                null (``created_at`` defaults to now); datetimes are ISO 8601 strings, ``tags``
                and ``metadata`` any JSON.

        Raises:
            ValueError: an unknown table or column, a missing id, or a value of the wrong type.
        """
        definition = _platform_table(table)
        values: dict[str, Any] = {}
        for name, value in row.items():
            column = definition.column(name)
            if column is None:
                raise ValueError(f"{definition.write_name} has no column {name!r}")
            try:
                values[column.sql_name] = encode_value(column, value)
            except InvalidValue as exc:
                raise ValueError(f"{definition.write_name}.{name}: {exc}") from None
        if not isinstance(values.get("id"), str) or not values["id"]:
            raise ValueError("a platform row needs a string id")
        values.setdefault("created_at", _now())
        names = [c.sql_name for c in definition.columns]
        params = [values.get(n) for n in names]
        updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names if n != "id")
        sql = (
            f"INSERT INTO {quote(definition.name)} ({', '.join(map(quote, names))}) "
            f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        org = await self.org(org_id)
        await org.write(lambda conn: conn.execute(sql, params))

    async def delete_platform_row(self, org_id: str, table: str, row_id: str) -> bool:
        """Delete one row of a platform table; return whether it existed.

        Organisation rows that reference it through a nullable column are kept, with the
        reference cleared; an experiment's links to dataset rows go with it.

        Raises:
            PlatformRowInUse: a required (non-nullable) column of an organisation table
                references the row; nothing is changed.
            ValueError: an unknown table.
        """
        definition = _platform_table(table)
        org = await self.org(org_id)

        def delete(conn: sqlite3.Connection) -> bool:
            catalog = org.catalog
            blocking: list[str] = []
            for other, column in catalog.referrers(definition.name):
                count = conn.execute(
                    f"SELECT count(*) FROM {quote(other.name)} WHERE {quote(column.sql_name)} = ?",
                    (row_id,),
                ).fetchone()[0]
                if not count:
                    continue
                if column.nullable:
                    conn.execute(
                        f"UPDATE {quote(other.name)} SET {quote(column.sql_name)} = NULL "
                        f"WHERE {quote(column.sql_name)} = ?",
                        (row_id,),
                    )
                else:
                    blocking.append(f"{count} row(s) of {other.name}.{column.name}")
            if blocking:
                raise PlatformRowInUse(
                    f"{definition.write_name} {row_id} is referenced by " + ", ".join(blocking)
                )
            cur = conn.execute(f"DELETE FROM {quote(definition.name)} WHERE id = ?", (row_id,))
            return cur.rowcount > 0

        return await org.write(delete)

    async def run_readonly_query(
        self, org_id: str, sql: str, params: Sequence[Any] = (), *, limit: int | None = None
    ) -> QueryOutcome:
        """Evaluate caller-written SQL on the organisation's tables, under the SQL boundary.

        Args:
            org_id: The organisation.
            sql: One SELECT statement with positional ``%s`` placeholders.
            params: One value per placeholder.
            limit: The most rows the result may have (default: the store's limit); a larger
                result raises rather than being truncated.

        Raises:
            QueryError: refused, failed, interrupted, or over a limit (``.status``, ``.detail``).
        """
        org = await self.org(org_id)
        limits = self.limits.query
        if limit is not None:
            limits = attrs.evolve(limits, max_rows=limit)
        return await org.query(sql, params, limits)

    async def link_experiment_rows(
        self, org_id: str, experiment_id: str, links: Iterable[tuple[str, str]]
    ) -> int:
        """Link an experiment to dataset rows; return how many links are new.

        Args:
            links: ``(table, row_id)`` pairs; ``table`` is an organisation table's name.

        Raises:
            ValueError: the experiment, a table or a row does not exist (nothing is linked).
        """
        wanted = list(links)
        org = await self.org(org_id)
        now = _now()

        def link(conn: sqlite3.Connection) -> int:
            if (
                conn.execute(
                    "SELECT 1 FROM core_experiment WHERE id = ?", (experiment_id,)
                ).fetchone()
                is None
            ):
                raise ValueError(f"experiment {experiment_id} does not exist")
            added = 0
            for table_name, row_id in wanted:
                table = org.catalog.resolve(table_name, core=False)
                if table is None or table.platform:
                    raise ValueError(f"no dataset table {table_name!r}")
                key = table.key
                found = conn.execute(
                    f"SELECT {quote(key.sql_name)} FROM {quote(table.name)} "
                    f"WHERE {quote(key.sql_name)} = ?",
                    (
                        int(row_id)
                        if key.data_type == "integer" and str(row_id).lstrip("-").isdigit()
                        else row_id,
                    ),
                ).fetchone()
                if found is None:
                    raise ValueError(f"no row {row_id!r} in {table.name}")
                cur = conn.execute(
                    "INSERT OR IGNORE INTO core_experiment_row "
                    "(experiment_id, table_name, row_id, created_at) VALUES (?, ?, ?, ?)",
                    (experiment_id, table.name, str(row_id), now),
                )
                added += cur.rowcount
            return added

        return await org.write(link)

    async def unlink_experiment_rows(
        self, org_id: str, experiment_id: str, links: Iterable[tuple[str, str]] | None = None
    ) -> int:
        """Remove an experiment's links (all when ``links`` is ``None``); return how many."""
        wanted = None if links is None else [(t, str(r)) for t, r in links]
        org = await self.org(org_id)

        def unlink(conn: sqlite3.Connection) -> int:
            if wanted is None:
                return conn.execute(
                    "DELETE FROM core_experiment_row WHERE experiment_id = ?", (experiment_id,)
                ).rowcount
            return sum(
                conn.execute(
                    "DELETE FROM core_experiment_row WHERE experiment_id = ? AND table_name = ? "
                    "AND row_id = ?",
                    (experiment_id, t, r),
                ).rowcount
                for t, r in wanted
            )

        return await org.write(unlink)

    async def experiment_rows(self, org_id: str, experiment_id: str) -> list[tuple[str, str]]:
        """The ``(table, row_id)`` pairs an experiment is linked to, oldest link first."""
        org = await self.org(org_id)

        def links(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [
                (row[0], row[1])
                for row in conn.execute(
                    "SELECT table_name, row_id FROM core_experiment_row WHERE experiment_id = ? "
                    "ORDER BY created_at, rowid",
                    (experiment_id,),
                )
            ]

        return await org.read(links)


_RECORD_TABLES = ("core_experiment", "core_instrument")


def _platform_table(name: str) -> TableDef:
    for table in PLATFORM_TABLES.values():
        if name in (table.name, table.write_name) and table.name in _RECORD_TABLES:
            return table
    raise ValueError(f"{name!r} is not a platform table (experiment or instrument)")

"""Table definitions: typed columns, keys, platform tables, and the values each type accepts.

A :class:`TableDef` describes one table of an organisation's dataset database. Columns have a
``name`` (what ``tools/read`` and ``data/write`` use) and an ``sql_name`` (what SQL uses): the two
are equal except for foreign keys, whose SQL column ends in ``_id`` (``sample`` -> ``sample_id``),
as on the hosted platform.

Types and their storage (every organisation table is a SQLite ``STRICT`` table, so the database
itself refuses a value of the wrong storage class):

========  ===========  ============================================================
type      stored as    accepted in JSON
========  ===========  ============================================================
text      TEXT         a string
integer   INTEGER      an integer (a float with an integral value is accepted)
float     REAL         a number (finite)
boolean   INTEGER 0/1  ``true`` / ``false``
datetime  TEXT         an ISO 8601 string; stored in UTC as ``2025-01-02T03:04:05.000000Z``
                       (a time without an offset is taken as UTC)
json      TEXT         any JSON value, stored as compact JSON text
========  ===========  ============================================================

Every table has a single-column primary key of type text or integer. A table created without one
gets ``id`` (text), which the server fills with a UUID when a write leaves it out; an integer key
left out is assigned by the database. A *raw* table (``semantic_category`` ``"raw"``) holds
series: points that belong to a parent row through a foreign key, ordered by an integer ``order``
column; its rows are deleted with their parent.

Platform tables exist in every organisation's database, in three kinds:

* kept by the platform's own routes (``core_experiment``, ``core_instrument``,
  ``core_experiment_row``; see :class:`labric.server.datasets.store.DatasetStore`): the write
  routes refuse them;
* describing the organisation (``core_organization``, ``core_organizationmember``,
  ``core_table``, ``core_user``): kept by the server, read-only to every write route (the
  organisation, its members and its tables' definitions);
* written by callers (``core_procedurestep``, ``core_operation``): the process steps and the
  operations that ran them, which the official client's step-recording helpers write through
  ``tools/write`` (and ``data/write`` may write too).

Organisation tables may reference experiments, instruments, operations and process steps.
``tools/schema`` lists platform tables after the organisation's own, ending with ``core_user``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

__all__ = [
    "DATA_TYPES",
    "PLATFORM_TABLES",
    "RAW",
    "Catalog",
    "ColumnDef",
    "TableDef",
    "decode_value",
    "encode_value",
    "quote",
]

#: The column types a table may declare.
DATA_TYPES = ("text", "integer", "float", "boolean", "datetime", "json")
#: The semantic category of tables that hold series.
RAW = "raw"
#: The semantic categories a table may have.
CATEGORIES = ("curated", RAW)

SQL_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "float": "REAL",
    "boolean": "INTEGER",
    "datetime": "TEXT",
    "json": "TEXT",
}

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_STORED_DATETIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_INT64 = (-(2**63), 2**63 - 1)
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def quote(identifier: str) -> str:
    """An SQL identifier, double-quoted (names are validated, so they never contain quotes)."""
    return f'"{identifier}"'


@attrs.frozen(kw_only=True)
class ColumnDef:
    """One column of a table.

    Attributes:
        id: The column's id (``None`` for platform tables).
        name: The name reads and writes use.
        sql_name: The SQL column (``<name>_id`` for a foreign key whose name lacks the suffix).
        data_type: One of :data:`DATA_TYPES`.
        primary_key: Whether this is the table's primary key.
        nullable: Whether the column accepts null.
        unique: Whether values must be unique (always true for the primary key).
        foreign_key: The SQL name of the referenced table, whose primary key this column holds.
        description: Free text.
    """

    id: int | None = None
    name: str
    sql_name: str
    data_type: str
    primary_key: bool = False
    nullable: bool = True
    unique: bool = False
    foreign_key: str | None = None
    description: str | None = None

    def schema_json(self) -> dict[str, Any]:
        """The hosted QueryableColumnSchema."""
        return {
            "id": self.id,
            "name": self.name,
            "sql_column_name": self.sql_name,
            "description": self.description,
            "data_type": self.data_type,
            "is_primary_key": self.primary_key,
            "is_foreign_key": self.foreign_key is not None,
            "is_nullable": self.nullable,
            "is_unique": self.unique,
            "foreign_key_table_name": self.foreign_key,
        }


@attrs.frozen(kw_only=True)
class TableDef:
    """One table: its names, category and columns (the primary key among them).

    Attributes:
        id: The table's id (``None`` for platform tables).
        name: The SQL name, also the name ``tools/schema`` shows (``core_experiment``).
        write_name: The name platform tables go by in reads and writes (``experiment``); equal to
            ``name`` for organisation tables.
        description: Free text.
        semantic_category: ``"curated"`` or ``"raw"`` (``None`` for platform tables).
        platform: Whether this is a platform table.
        read_only: Why the write routes refuse this table (``None``: writable).
        columns: The columns, in order.
    """

    id: int | None = None
    name: str
    write_name: str
    description: str | None = None
    semantic_category: str | None = None
    platform: bool = False
    read_only: str | None = None
    columns: tuple[ColumnDef, ...]
    by_name: Mapping[str, ColumnDef] = attrs.field(init=False, repr=False, eq=False)
    by_sql_name: Mapping[str, ColumnDef] = attrs.field(init=False, repr=False, eq=False)
    pk: ColumnDef | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})
        object.__setattr__(self, "by_sql_name", {c.sql_name: c for c in self.columns})
        pks = [c for c in self.columns if c.primary_key]
        object.__setattr__(self, "pk", pks[0] if len(pks) == 1 else None)

    @property
    def key(self) -> ColumnDef:
        """The primary key column (every table that rows are written to has one)."""
        assert self.pk is not None, f"table {self.name} has no single-column primary key"
        return self.pk

    @property
    def is_raw(self) -> bool:
        """Whether the table holds series."""
        return self.semantic_category == RAW

    @property
    def foreign_keys(self) -> list[ColumnDef]:
        """The foreign-key columns."""
        return [c for c in self.columns if c.foreign_key is not None]

    def column(self, name: str) -> ColumnDef | None:
        """A column by its name, or by its SQL name (``sample`` or ``sample_id``)."""
        return self.by_name.get(name) or self.by_sql_name.get(name)

    def schema_json(self) -> dict[str, Any]:
        """The hosted QueryableTableSchema."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "semantic_category": self.semantic_category,
            "columns": [c.schema_json() for c in self.columns],
        }


def _col(name: str, data_type: str, **kw: Any) -> ColumnDef:
    return ColumnDef(name=name, sql_name=kw.pop("sql_name", name), data_type=data_type, **kw)


_ID = {"primary_key": True, "nullable": False, "unique": True}
_KEPT = "is a platform table, kept by its own routes; it cannot be written here"
_DESCRIBES = "describes the organisation and is read-only; read it with tools/read or tools/query"


def _fk(name: str, target: str, **kw: Any) -> ColumnDef:
    return _col(name, "text", sql_name=f"{name}_id", foreign_key=target, **kw)


#: The platform tables every organisation has, by SQL name, in ``tools/schema`` order.
PLATFORM_TABLES: dict[str, TableDef] = {
    t.name: t
    for t in (
        TableDef(
            name="core_experiment",
            write_name="experiment",
            description="Experiments: runs of work that files and dataset rows are linked to",
            platform=True,
            read_only=_KEPT,
            columns=(
                _col("id", "text", **_ID),
                _col("name", "text", nullable=False),
                _col("description", "text"),
                _col("status", "text"),
                _col("tags", "json"),
                _col("metadata", "json"),
                _col("started_at", "datetime"),
                _col("ended_at", "datetime"),
                _col("created_at", "datetime", nullable=False),
                _col("updated_at", "datetime"),
            ),
        ),
        TableDef(
            name="core_instrument",
            write_name="instrument",
            description="Instruments paired with the organisation",
            platform=True,
            read_only=_KEPT,
            columns=(
                _col("id", "text", **_ID),
                _col("name", "text", nullable=False),
                _col("description", "text"),
                _col("metadata", "json"),
                _col("created_at", "datetime", nullable=False),
                _col("updated_at", "datetime"),
            ),
        ),
        TableDef(
            name="core_experiment_row",
            write_name="experiment_row",
            description="Links from experiments to dataset rows (table and row id)",
            platform=True,
            read_only=_KEPT,
            columns=(
                _col(
                    "experiment",
                    "text",
                    sql_name="experiment_id",
                    nullable=False,
                    foreign_key="core_experiment",
                ),
                _col("table_name", "text", nullable=False),
                _col("row_id", "text", nullable=False),
                _col("created_at", "datetime", nullable=False),
            ),
        ),
        TableDef(
            name="core_organization",
            write_name="organization",
            description="The organisation itself",
            platform=True,
            read_only=_DESCRIBES,
            columns=(
                _col("id", "text", **_ID),
                _col("name", "text", nullable=False),
                _col("date_created", "datetime", nullable=False),
            ),
        ),
        TableDef(
            name="core_organizationmember",
            write_name="organizationmember",
            description="The organisation's members and their roles",
            platform=True,
            read_only=_DESCRIBES,
            columns=(
                _col("id", "text", **_ID),
                _fk("organization", "core_organization", nullable=False),
                _fk("user", "core_user", nullable=False),
                _col("role", "text", nullable=False),
                _col("date_created", "datetime", nullable=False),
            ),
        ),
        TableDef(
            name="core_table",
            write_name="table",
            description="The organisation's own tables (ids as tools/schema shows them)",
            platform=True,
            read_only=_DESCRIBES,
            columns=(
                _col("id", "integer", **_ID),
                _col("name", "text", nullable=False, unique=True),
                _col("description", "text"),
                _col("semantic_category", "text", nullable=False),
                _col("date_created", "datetime", nullable=False),
            ),
        ),
        TableDef(
            name="core_procedurestep",
            write_name="procedurestep",
            description="Process and measurement steps: a named procedure with its parameters, "
            "for one table (has_effect false for a measurement)",
            platform=True,
            columns=(
                _col("id", "text", **_ID),
                _col("name", "text", nullable=False),
                _col("parameters", "json"),
                _fk("organization", "core_organization", nullable=False),
                _col("table", "integer", sql_name="table_id", foreign_key="core_table"),
                _col("has_effect", "boolean", nullable=False),
                _col("date_created", "datetime", nullable=False),
                _col("date_updated", "datetime", nullable=False),
            ),
        ),
        TableDef(
            name="core_operation",
            write_name="operation",
            description="Operations: one run of a procedure step, between start and end times",
            platform=True,
            columns=(
                _col("id", "text", **_ID),
                _col("name", "text", nullable=False),
                _fk("step", "core_procedurestep", nullable=False),
                _col("status", "text"),
                _fk("organization", "core_organization", nullable=False),
                _col("is_atomic", "boolean", nullable=False),
                _col("start_time", "datetime"),
                _col("end_time", "datetime"),
                _col("date_created", "datetime", nullable=False),
                _col("date_updated", "datetime", nullable=False),
            ),
        ),
        TableDef(
            name="core_user",
            write_name="user",
            description="The organisation's members (people)",
            platform=True,
            read_only=_DESCRIBES,
            columns=(
                _col("id", "text", **_ID),
                _col("name", "text", nullable=False),
                _col("email", "text"),
                _col("date_joined", "datetime", nullable=False),
            ),
        ),
    )
}

#: Platform tables organisation tables may reference.
REFERENCEABLE_PLATFORM = (
    "core_experiment",
    "core_instrument",
    "core_procedurestep",
    "core_operation",
)

PLATFORM_DDL = """
CREATE TABLE core_experiment (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    status       TEXT,
    tags         TEXT,
    metadata     TEXT,
    started_at   TEXT,
    ended_at     TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT
) STRICT;
CREATE TABLE core_instrument (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    metadata     TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT
) STRICT;
CREATE TABLE core_experiment_row (
    experiment_id  TEXT NOT NULL REFERENCES core_experiment(id) ON DELETE CASCADE,
    table_name     TEXT NOT NULL,
    row_id         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (experiment_id, table_name, row_id)
) STRICT;
CREATE INDEX core_experiment_row_target ON core_experiment_row(table_name, row_id);
"""

#: The platform tables added in version 2 of the organisation file (created on upgrade too;
#: ``core_table`` is filled from the table definitions then).
PLATFORM_DDL_V2 = """
CREATE TABLE core_organization (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    date_created  TEXT NOT NULL
) STRICT;
CREATE TABLE core_user (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    email        TEXT,
    date_joined  TEXT NOT NULL
) STRICT;
CREATE TABLE core_organizationmember (
    id               TEXT PRIMARY KEY NOT NULL,
    organization_id  TEXT NOT NULL REFERENCES core_organization(id),
    user_id          TEXT NOT NULL REFERENCES core_user(id),
    role             TEXT NOT NULL,
    date_created     TEXT NOT NULL
) STRICT;
CREATE TABLE core_table (
    id                 INTEGER PRIMARY KEY NOT NULL,
    name               TEXT NOT NULL UNIQUE,
    description        TEXT,
    semantic_category  TEXT NOT NULL,
    date_created       TEXT NOT NULL
) STRICT;
INSERT INTO core_table (id, name, description, semantic_category, date_created)
    SELECT id, name, description, semantic_category, created_at FROM _labric_tables;
CREATE TABLE core_procedurestep (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    parameters       TEXT,
    organization_id  TEXT NOT NULL REFERENCES core_organization(id),
    table_id         INTEGER REFERENCES core_table(id),
    has_effect       INTEGER NOT NULL,
    date_created     TEXT NOT NULL,
    date_updated     TEXT NOT NULL
) STRICT;
CREATE INDEX core_procedurestep_name ON core_procedurestep(name, table_id);
CREATE TABLE core_operation (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    step_id          TEXT NOT NULL REFERENCES core_procedurestep(id),
    status           TEXT,
    organization_id  TEXT NOT NULL REFERENCES core_organization(id),
    is_atomic        INTEGER NOT NULL,
    start_time       TEXT,
    end_time         TEXT,
    date_created     TEXT NOT NULL,
    date_updated     TEXT NOT NULL
) STRICT;
CREATE INDEX core_operation_step ON core_operation(step_id, name);
"""


@attrs.frozen
class Catalog:
    """Every table of one organisation (its own, then the platform's), by SQL name.

    Immutable: a new catalog replaces the old one when a table is created, so it can be read
    from any thread.
    """

    tables: Mapping[str, TableDef]

    def own(self) -> list[TableDef]:
        """The organisation's tables, oldest first."""
        return sorted((t for t in self.tables.values() if not t.platform), key=lambda t: t.id or 0)

    def ordered(self) -> list[TableDef]:
        """The organisation's tables, then the platform's (as ``tools/schema`` lists them)."""
        return self.own() + [t for t in self.tables.values() if t.platform]

    def resolve(self, name: str, *, core: bool | None = None) -> TableDef | None:
        """The table a read or write names.

        Args:
            name: An organisation table, or a platform table by either name (``experiment``,
                ``core_experiment``).
            core: ``True`` for ``target_type`` ``core-table`` (platform tables only), ``False``
                for ``table`` (organisation tables, though a platform name still resolves, since
                no organisation table can take one), ``None`` for either.
        """
        table = self.tables.get(name)
        if table is None:
            table = self.tables.get(f"core_{name}")
            if table is not None and not table.platform:
                table = None
        if table is None:
            return None
        if core is True and not table.platform:
            return None
        return table

    def referrers(self, table: str) -> list[tuple[TableDef, ColumnDef]]:
        """Every (table, column) whose foreign key references ``table`` (experiment links aside)."""
        found: list[tuple[TableDef, ColumnDef]] = []
        for other in self.tables.values():
            if other.name == "core_experiment_row":
                continue
            for column in other.columns:
                if column.foreign_key == table:
                    found.append((other, column))
        return found

    def with_table(self, table: TableDef) -> Catalog:
        """A copy with ``table`` added."""
        return Catalog({**self.tables, table.name: table})


# -- values ----------------------------------------------------------------------------------


class InvalidValue(ValueError):
    """A value a column cannot hold; the message says why."""


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise InvalidValue(f"expected a string, got {_kind(value)}")


def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        raise InvalidValue("expected an integer, got a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidValue("integer out of the 64-bit range")
        return value
    raise InvalidValue(f"expected an integer, got {_kind(value)}")


def _float(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        raise InvalidValue("expected a finite number") from None
    if not math.isfinite(number):
        raise InvalidValue("expected a finite number")
    return number


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    raise InvalidValue(f"expected true or false, got {_kind(value)}")


def _datetime(value: Any) -> Any:
    if not isinstance(value, str):
        raise InvalidValue(f"expected an ISO 8601 date-time string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"not an ISO 8601 date-time: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        moment = parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidValue(f"outside the years 1 to 9999 in UTC: {value[:40]!r}") from None
    # strftime's %Y does not pad years before 1000 on every platform ("1-01-01").
    return f"{moment.year:04d}" + moment.strftime(_STORED_DATETIME[2:])


def _json(value: Any) -> Any:
    try:
        return _COMPACT.encode(value)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "integer": _integer,
    "float": _float,
    "boolean": _boolean,
    "datetime": _datetime,
    "json": _json,
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def encoder(data_type: str) -> Callable[[Any], Any]:
    """The function turning a JSON value into the stored value of a type (null not included).

    The function raises :class:`InvalidValue` for a value the type does not accept.
    """
    return _ENCODERS[data_type]


def encode_value(column: ColumnDef, value: Any) -> Any:
    """The stored form of ``value`` for ``column`` (``None`` stays ``None``).

    Raises:
        InvalidValue: the value does not fit the column's type.
    """
    if value is None:
        return None
    return _ENCODERS[column.data_type](value)


def decode_value(data_type: str, value: Any) -> Any:
    """The JSON form of a stored value."""
    if value is None:
        return None
    if data_type == "boolean":
        return bool(value)
    if data_type == "json":
        try:
            return json.loads(value)
        except (TypeError, ValueError):
            return value
    return value


def decoder(columns: Iterable[ColumnDef]) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """A function turning a stored row (values in ``columns`` order) into its JSON object."""
    plan = [(c.name, c.data_type) for c in columns]
    plain = all(t not in ("boolean", "json") for _, t in plan)
    names = [n for n, _ in plan]
    if plain:
        return lambda row: dict(zip(names, row, strict=True))
    return lambda row: {n: decode_value(t, v) for (n, t), v in zip(plan, row, strict=True)}

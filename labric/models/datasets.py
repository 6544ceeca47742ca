"""Models of the datasets resource, with the hosted platform's field names.

Response models mirror the hosted schemas: :class:`TableInfo` (QueryableTableSchema),
:class:`ColumnInfo` (QueryableColumnSchema), :class:`QueryResult`, :class:`WriteResult`
(WriteDataResponse) with :class:`TableWriteResult` and :class:`SeriesWriteResult`. Request models
(:class:`Column`, :class:`TableWrite`, :class:`SeriesWrite`) describe what is sent. The batched
``write`` reports :class:`WriteProgress` per request and returns a :class:`WriteSummary`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = [
    "BatchWriteResult",
    "Column",
    "ColumnInfo",
    "ColumnType",
    "OnMatch",
    "QueryResult",
    "SeriesWrite",
    "SeriesWriteResult",
    "TableInfo",
    "TableSummary",
    "TableWrite",
    "TableWriteResult",
    "WriteBatch",
    "WriteMode",
    "WritePlan",
    "WriteProgress",
    "WriteResult",
    "WriteSummary",
]


class ColumnType(OpenEnum):
    """The type of a table column."""

    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    JSON = "json"


class WriteMode(OpenEnum):
    """How a table write applies its rows (hosted TableWriteMode)."""

    INSERT = "insert"
    UPSERT = "upsert"
    UPDATE = "update"
    DELETE = "delete"


class OnMatch(OpenEnum):
    """What an upsert or update does to a matched row (hosted TableWriteOnMatch)."""

    OVERWRITE = "overwrite"
    FILL_MISSING = "fill_missing"


@attrs.frozen(kw_only=True)
class Column:
    """A column of a table to create.

    Attributes:
        name: Lowercase letters, digits and ``_``, starting with a letter.
        type: The column's type; may be left out for a foreign key (it takes the referenced
            key's type).
        nullable: Whether the column accepts null.
        unique: Whether values must be unique.
        primary_key: Whether this is the table's primary key (text or integer). A table without
            one gets a text ``id`` filled with UUIDs.
        foreign_key: The table whose primary key this column holds (its SQL column gets ``_id``
            appended: ``sample`` is ``sample_id`` in SQL).
        description: Free text.
    """

    name: str
    type: ColumnType | str | None = None
    nullable: bool = True
    unique: bool = False
    primary_key: bool = False
    foreign_key: str | None = None
    description: str | None = None


@attrs.frozen(kw_only=True)
class ColumnInfo:
    """A column as the schema describes it (hosted QueryableColumnSchema).

    ``name`` is what reads and writes use; ``sql_column_name`` is what SQL uses (foreign keys end
    in ``_id``).
    """

    id: int | None = None
    name: str
    sql_column_name: str
    description: str | None = None
    data_type: str
    is_primary_key: bool
    is_foreign_key: bool
    is_nullable: bool
    is_unique: bool
    foreign_key_table_name: str | None = None


@attrs.frozen(kw_only=True)
class TableInfo:
    """A table as the schema describes it (hosted QueryableTableSchema).

    Organisation tables have an ``id`` and a ``semantic_category`` (``curated``, or ``raw`` for
    tables holding series); platform tables (``core_experiment``, ...) have neither.
    """

    __repr__ = bounded_repr

    id: int | None = None
    name: str
    description: str | None = None
    semantic_category: str | None = None
    columns: list[ColumnInfo]

    def column(self, name: str) -> ColumnInfo | None:
        """A column by ``name`` or ``sql_column_name``."""
        for column in self.columns:
            if name in (column.name, column.sql_column_name):
                return column
        return None


@attrs.frozen(kw_only=True)
class QueryResult:
    """The result of a read-only SQL query: column names and row-major data.

    Example::

        result = await client.datasets.query("SELECT name, od600 FROM samples WHERE od600 > %s",
                                             [0.5])
        for row in result.rows():
            print(row["name"], row["od600"])
    """

    __repr__ = bounded_repr

    columns: list[str]
    data: list[list[Any]]

    def __len__(self) -> int:
        return len(self.data)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Yield each row as a dict keyed by column name (a repeated name keeps its last value)."""
        columns = self.columns
        for row in self.data:
            yield dict(zip(columns, row, strict=False))

    def to_pandas(self) -> Any:
        """The result as a ``pandas.DataFrame`` (pandas is imported only when this is called).

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            raise ImportError(
                "QueryResult.to_pandas() needs pandas, which is not installed: pip install pandas"
            ) from exc
        return pandas.DataFrame(self.data, columns=self.columns)


@attrs.frozen(kw_only=True)
class TableWrite:
    """One table write of a ``data/write`` request (hosted TableWrite).

    Attributes:
        table: The table's name.
        rows: Row objects: column name -> value. A row may carry ``"_ref": "label"``; later rows
            and series refer to it as ``"@label"``. A foreign key may also be a lookup object
            such as ``{"name": "S-001"}`` matching exactly one existing row.
        mode: insert (default), upsert, update or delete.
        key: The columns update, upsert and delete match on (default: the primary key).
        cascade: Delete only: also delete rows that reference the deleted ones.
        on_match: overwrite (default) or fill_missing (only fill columns that are null).
    """

    __repr__ = bounded_repr

    table: str
    rows: Sequence[Mapping[str, Any]]
    mode: WriteMode | str | None = None
    key: Sequence[str] | None = None
    cascade: bool | None = None
    on_match: OnMatch | str | None = None


@attrs.frozen(kw_only=True)
class SeriesWrite:
    """One parent row's points in a raw table (hosted SeriesWrite); replaces earlier points.

    Attributes:
        table: The raw table.
        parent: The parent row: its id, an ``"@label"``, or a lookup object.
        columns: Column name -> list of values, all of the same length. ``order`` is filled
            with each point's index unless given.
        parent_column: The foreign key pointing at the parent (needed only when the raw table
            has several).
    """

    __repr__ = bounded_repr

    table: str
    parent: str | int | Mapping[str, Any]
    columns: Mapping[str, Sequence[Any]]
    parent_column: str | None = None


@attrs.frozen(kw_only=True)
class TableWriteResult:
    """What one table write did (hosted TableWriteResult); ``ids`` are in input order."""

    __repr__ = bounded_repr

    table: str
    created: int
    updated: int
    deleted: int
    cascade_deleted: dict[str, int] | None = None
    ids: list[str]
    rows: list[dict[str, Any]] | None = None


@attrs.frozen(kw_only=True)
class SeriesWriteResult:
    """What one series write did (hosted SeriesWriteResult)."""

    table: str
    parent_id: str
    points_written: int
    points_replaced: int


@attrs.frozen(kw_only=True)
class WriteResult:
    """The answer to one ``data/write`` request (hosted WriteDataResponse).

    Attributes:
        job_execution_id: The execution the write was recorded under (null on a dry run).
        tables: One result per table write, in request order.
        series: One result per series, in request order.
        refs: Each ``_ref`` label -> the id of the row it labelled.
    """

    __repr__ = bounded_repr

    job_execution_id: str | None = None
    tables: list[TableWriteResult]
    series: list[SeriesWriteResult]
    refs: dict[str, str]


@attrs.frozen(kw_only=True)
class WriteBatch:
    """One request of a batched write: the rows ``[start, stop)`` of the input, and its counts."""

    index: int
    start: int
    stop: int
    created: int
    updated: int
    deleted: int


@attrs.frozen(kw_only=True)
class WriteProgress:
    """Reported to ``on_progress`` after each request of a batched write succeeds.

    Attributes:
        table: The table written.
        batch: The batch just written (its rows and counts).
        rows_done: Rows written so far (committed, unless a dry run).
        bytes_sent: Request body bytes sent so far.
        requests: Requests made so far.
        elapsed: Seconds since the write started.
        rate: Rows per second so far.
    """

    table: str
    batch: WriteBatch
    rows_done: int
    bytes_sent: int
    requests: int
    elapsed: float
    rate: float


@attrs.frozen(kw_only=True)
class WriteSummary:
    """The outcome of a batched ``datasets.write``, over all its requests.

    Attributes:
        table: The table written.
        job_execution_id: The execution every batch was recorded under (null on a dry run).
        dry_run: Whether nothing was committed.
        rows: Rows sent.
        requests: Requests made (one per batch).
        created: Rows created.
        updated: Rows updated.
        deleted: Rows deleted.
        cascade_deleted: Rows deleted with them, per table.
        ids: The ids of the rows, in input order.
        batches: The batches, in order.
    """

    __repr__ = bounded_repr

    table: str
    job_execution_id: str | None = None
    dry_run: bool = False
    rows: int
    requests: int
    created: int
    updated: int
    deleted: int
    cascade_deleted: dict[str, int] = attrs.field(factory=dict)
    ids: list[str]
    batches: list[WriteBatch]


@attrs.frozen(kw_only=True)
class TableSummary:
    """Rows one table of a deprecated ``tools/batch-write`` created and updated (hosted
    TableSummary)."""

    created: int | None = None
    updated: int | None = None


@attrs.frozen(kw_only=True)
class WritePlan:
    """What a dry-run ``tools/batch-write`` would do (hosted WritePlan).

    Attributes:
        insert_order: The tables in the order they are written (foreign-key order).
        operations: One entry per table: its mode, rows, and rows it would create and update.
    """

    insert_order: list[str]
    operations: list[dict[str, Any]]


@attrs.frozen(kw_only=True)
class BatchWriteResult:
    """The answer to a deprecated ``tools/batch-write`` (hosted BatchWriteResponse).

    Attributes:
        success: Whether the write succeeded.
        job_execution_id: The execution it was recorded under (null on a dry run).
        summary: Table -> rows created and updated.
        refs: Each ``_ref`` label -> the id of the row it labelled.
        records: Table -> the written rows (with ``return_records``).
        plan: The plan (on a dry run).
    """

    __repr__ = bounded_repr

    success: bool | None = None
    job_execution_id: str | None = None
    summary: dict[str, TableSummary]
    refs: dict[str, str]
    records: dict[str, list[dict[str, Any]]] | None = None
    plan: WritePlan | None = None

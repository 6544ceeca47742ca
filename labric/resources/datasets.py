"""``client.datasets``: tables of structured experimental data, queried and written at scale.

Reads use the hosted routes (``tools/schema``, ``tools/read``, ``tools/query``), writes use
``data/write`` (the deprecated ``tools/write`` and ``tools/batch-write`` have twins here for
code that must match the official client); creating a table (``POST /v1/datasets``) and
getting one definition (``GET /v1/datasets/{name}``) are local-server routes.
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Any

from labric._core.context import current_execution_id
from labric._core.converter import unstructure
from labric._core.pagination import AsyncPager
from labric._core.urls import path_segment
from labric.models.datasets import (
    BatchWriteResult,
    Column,
    OnMatch,
    QueryResult,
    SeriesWrite,
    TableInfo,
    TableWrite,
    WriteMode,
    WriteResult,
    WriteSummary,
)
from labric.resources._base import AsyncResource
from labric.resources._batching import (
    MAX_BODY_BYTES,
    ProgressCallback,
    encode_json,
    json_body,
    write_batches,
)

__all__ = ["AsyncDatasets"]

#: The most values one request's series may hold (hosted ``data/write``).
MAX_SERIES_VALUES = 250_000

RowsType = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]


def _compact(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _value(option: Any) -> Any:
    return getattr(option, "value", option)


def _target(name: str) -> tuple[str, str]:
    """``(target_name, target_type)`` of a table name; ``core_x`` names platform table ``x``."""
    if not name:
        raise ValueError("name must be a non-empty string")
    if name.startswith("core_"):
        return name.removeprefix("core_"), "core-table"
    return name, "table"


class AsyncDatasets(AsyncResource):
    """Datasets: an organisation's tables, their rows, read-only SQL over them, and writes."""

    async def list(self) -> builtins.list[TableInfo]:
        """Every table: the organisation's own first, then platform tables (``core_experiment``,
        ``core_instrument``, ...)."""
        response = await self._transport.request("GET", "/v1/tools/schema")
        return self._parse(response, builtins.list[TableInfo])

    async def get(self, name: str) -> TableInfo:
        """One table's definition.

        Raises:
            NotFoundError: no such table.
        """
        path = f"/v1/datasets/{path_segment(name, 'name')}"
        response = await self._transport.request("GET", path)
        return self._parse(response, TableInfo)

    async def create(
        self,
        name: str,
        *,
        columns: Sequence[Column | Mapping[str, Any]],
        description: str | None = None,
        semantic_category: str | None = None,
    ) -> TableInfo:
        """Create a table.

        Args:
            name: Lowercase letters, digits and ``_``, starting with a letter.
            columns: :class:`~labric.models.Column` models or dicts such as
                ``{"name": "od600", "type": "float"}``. Without a primary key the table gets a
                text ``id`` filled with UUIDs.
            description: Free text.
            semantic_category: ``"curated"`` (default) or ``"raw"`` for a table of series (it
                needs a foreign key to its parent and gets an integer ``order`` column).

        Raises:
            ConflictError: a table of that name exists.
            UnprocessableEntityError: the definition is invalid (``detail`` lists every problem).

        Example::

            await client.datasets.create("samples", columns=[
                {"name": "name", "type": "text", "unique": True, "nullable": False},
                {"name": "od600", "type": "float"},
                {"name": "experiment", "foreign_key": "experiment"},
            ])
        """
        specs = [_compact(unstructure(c)) if isinstance(c, Column) else dict(c) for c in columns]
        body = _compact(
            {
                "name": name,
                "description": description,
                "semantic_category": semantic_category,
                "columns": specs,
            }
        )
        response = await self._transport.request("POST", "/v1/datasets", json=body)
        return self._parse(response, TableInfo)

    def rows(
        self,
        name: str,
        *,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[dict[str, Any]]:
        """A table's rows, in insertion order, as dicts keyed by column name.

        Args:
            name: The table (``core_experiment`` or ``experiment`` for a platform table).
            filters: Column -> value each row must equal (``None`` matches null); a key such as
                ``sample__name`` follows the foreign key ``sample`` and filters on its ``name``.
            limit: The most rows to yield in total.
            page_size: Rows fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every row.

        Example::

            async for row in client.datasets.rows("readings", filters={"sample__name": "S-1"}):
                print(row["od600"])
        """
        target_name, target_type = _target(name)
        body: dict[str, Any] = {"target_name": target_name, "target_type": target_type}
        if filters:
            body["filters"] = dict(filters)
        return self._pager(
            "/v1/tools/read",
            dict[str, Any],
            method="POST",
            json=body,
            limit=limit,
            page_size=page_size,
        )

    async def query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Run one read-only SQL statement over the organisation's tables.

        Use each column's ``sql_column_name`` (foreign keys end in ``_id``) and positional
        ``%s`` placeholders; named ones (``:x``) are refused.

        Args:
            sql: One SELECT statement.
            params: One value per ``%s``.

        Returns:
            The columns and rows; ``.rows()`` yields dicts, ``.to_pandas()`` builds a DataFrame.

        Raises:
            BadRequestError: the query was refused, failed, timed out or returned too much.
        """
        body = {"query": sql, "params": builtins.list(params or [])}
        response = await self._transport.request("POST", "/v1/tools/query", json=body)
        return self._parse(response, QueryResult)

    async def write(
        self,
        table: str,
        rows: RowsType,
        *,
        mode: WriteMode | str = WriteMode.INSERT,
        key: Sequence[str] | None = None,
        on_match: OnMatch | str | None = None,
        cascade: bool = False,
        job_execution_id: str | None = None,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> WriteSummary:
        """Write any number of rows to one table, in as few requests as the limits allow.

        Rows are read lazily (a generator is never held whole), encoded as compact JSON, and
        sent in order in batches under the request limits (under 4.5 MB, at most 10,000 rows);
        each batch is one transaction. Every batch is recorded under one job execution, so the
        whole write can be reverted together.

        Args:
            table: The table.
            rows: Row mappings (column name -> value), from an iterable or an async iterable.
                Datetimes, dates, UUIDs, enums and decimals are converted; ``_ref`` labels work
                within one batch only.
            mode: insert, upsert, update or delete.
            key: The columns to match rows on (upsert, update, delete; default: primary key).
            on_match: overwrite (default) or fill_missing, for upsert and update.
            cascade: Delete only: also delete rows that reference the deleted ones.
            job_execution_id: Record the write under this execution (default:
                the execution of an enclosing ``jobs.track``, else ``LABRIC_JOB_EXECUTION_ID``,
                else one the server opens for the first batch).
            dry_run: Validate every batch without committing anything.
            on_progress: Called with a :class:`~labric.models.WriteProgress` after each batch.

        Returns:
            Counts over all batches, the row ids in input order, and the batches.

        Raises:
            WriteBatchError: a batch failed, or a row could not be sent. The error says which
                rows were committed (by batch) and which were not; the API error is its cause.

        Example::

            def readings():
                for i, value in enumerate(sensor_values()):
                    yield {"sample": sample_id, "t": i, "od600": value}

            summary = await client.datasets.write("readings", readings())
        """
        execution = job_execution_id or current_execution_id()
        options = {
            "mode": _value(mode),
            "key": builtins.list(key) if key is not None else None,
            "on_match": _value(on_match),
            "cascade": True if cascade else None,
        }

        async def send(body: bytes) -> tuple[WriteResult, int]:
            data, headers = json_body(body)
            response = await self._transport.request(
                "POST", "/v1/data/write", data=data, headers=headers
            )
            return self._parse(response, WriteResult), len(body)

        return await write_batches(
            send,
            table=table,
            rows=rows,
            options=options,
            job_execution_id=execution,
            dry_run=dry_run,
            on_progress=on_progress,
        )

    async def write_series(
        self,
        table: str,
        *,
        parent: str | int | Mapping[str, Any],
        columns: Mapping[str, Sequence[Any]],
        parent_column: str | None = None,
        job_execution_id: str | None = None,
        dry_run: bool = False,
    ) -> WriteResult:
        """Write one parent row's series to a raw table, replacing the points it had there.

        Args:
            table: The raw table.
            parent: The parent row's id, or a lookup object such as ``{"name": "S-001"}``.
            columns: Column name -> list of values (equal lengths); ``order`` defaults to each
                point's index.
            parent_column: The foreign key to the parent, when the table has several.
            job_execution_id: Record the write under this execution (default: the enclosing
                ``jobs.track``'s, else ``LABRIC_JOB_EXECUTION_ID``, else a new one).
            dry_run: Validate without committing.

        Raises:
            ValueError: the series is over a request limit (250,000 values, 4.5 MB). A series
                replaces the parent's points as a whole, so it cannot be split across requests.
            BadRequestError: the server found problems (``detail`` lists them with paths).
        """
        count = sum(len(v) for v in columns.values())
        if count > MAX_SERIES_VALUES:
            raise ValueError(
                f"The series has {count:,} values; one request takes at most "
                f"{MAX_SERIES_VALUES:,}, and a series cannot be split across requests"
            )
        series = SeriesWrite(
            table=table, parent=parent, columns=columns, parent_column=parent_column
        )
        return await self.transact(
            series=[series], job_execution_id=job_execution_id, dry_run=dry_run
        )

    async def transact(
        self,
        tables: Sequence[TableWrite] = (),
        *,
        series: Sequence[SeriesWrite] = (),
        job_execution_id: str | None = None,
        job_name: str | None = None,
        dry_run: bool = False,
        return_rows: bool = False,
    ) -> WriteResult:
        """Send one ``data/write`` request: every table write, then every series, in one
        transaction (all applied, or none).

        Rows may label themselves with ``"_ref": "s1"`` and later rows and series refer to them
        as ``"@s1"``; foreign keys may also be lookup objects matching one existing row.

        Args:
            tables: Table writes, applied in order.
            series: Series, applied after the table writes.
            job_execution_id: Record the write under this execution (default: the enclosing
                ``jobs.track``'s, else ``LABRIC_JOB_EXECUTION_ID``, else a new one, returned).
            job_name: The job of a new execution.
            dry_run: Validate and roll back.
            return_rows: Return the written rows.

        Raises:
            ValueError: the request is over the 4.5 MB body limit (use :meth:`write`).
            BadRequestError: the server found problems; ``detail`` lists each with its path.
            PayloadTooLargeError: over the row (10,000) or series-value (250,000) limit.

        Example::

            result = await client.datasets.transact([
                TableWrite(table="samples", rows=[{"_ref": "s1", "name": "S-001"}]),
                TableWrite(table="measurements", rows=[{"sample": "@s1", "od600": 0.41}]),
            ])
            sample_id = result.refs["s1"]
        """
        execution = job_execution_id or current_execution_id()
        body = _compact(
            {
                "tables": [_compact(unstructure(t)) for t in tables] or None,
                "series": [_compact(unstructure(s)) for s in series] or None,
                "job_execution_id": execution,
                "job_name": job_name,
                "dry_run": dry_run or None,
                "return_rows": return_rows or None,
            }
        )
        data = encode_json(body)
        if len(data) >= MAX_BODY_BYTES:
            raise ValueError(
                f"The request is {len(data):,} bytes; data/write takes bodies under "
                f"{MAX_BODY_BYTES:,} bytes. Use datasets.write to send rows in batches"
            )
        body_data, headers = json_body(data)
        response = await self._transport.request(
            "POST", "/v1/data/write", data=body_data, headers=headers
        )
        return self._parse(response, WriteResult)

    async def tools_write(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        mode: str = "create",
        match_on: Sequence[str] | None = None,
        on_match: OnMatch | str | None = None,
        defaults: Mapping[str, str] | None = None,
        job_execution_id: str | None = None,
        job_name: str | None = None,
        collect_output: bool = True,
        dry_run: bool = False,
    ) -> builtins.list[dict[str, Any]]:
        """Deprecated: write rows to one table through the hosted ``tools/write``.

        Use :meth:`write` (``data/write``), which batches any number of rows under the limits
        and also updates and deletes. This is for code that must match the official client's
        ``tools.write`` exactly, in one request (a body under 2.5 MB, at most 10,000 rows).

        Args:
            table: The table (``core_operation`` or ``operation`` for a platform table).
            rows: Row mappings, column name -> value.
            mode: ``create``, ``create-or-update`` or ``update``.
            match_on: The columns a row is matched on (``params_to_match_for_update``).
            on_match: fill_missing (the route's default) or overwrite.
            defaults: Column -> ``DATETIME_NOW`` or ``UUID4``, for rows inserted without one.
            job_execution_id: Record the write under this execution (default: the enclosing
                ``jobs.track``'s, else ``LABRIC_JOB_EXECUTION_ID``, else a new one).
            job_name: The job of a new execution.
            collect_output: Return the written rows (else ``[]``).
            dry_run: Validate and roll back.

        Returns:
            The written rows, as dicts keyed by column name.

        Raises:
            BadRequestError: problems with the rows (``detail`` and the body's ``errors``).
            PermissionDeniedError: the table is read-only.
        """
        warnings.warn(
            "datasets.tools_write() uses the deprecated tools/write route; use "
            "datasets.write() (data/write) instead",
            DeprecationWarning,
            stacklevel=2,
        )
        target_name, target_type = _target(table)
        body = _compact(
            {
                "target_name": target_name,
                "target_type": target_type,
                "data": [dict(row) for row in rows],
                "mode": mode,
                "params_to_match_for_update": builtins.list(match_on) if match_on else None,
                "on_match": _value(on_match),
                "defaults": dict(defaults) if defaults else None,
                "job_execution_id": job_execution_id or current_execution_id(),
                "job_name": job_name,
                "collect_output": collect_output,
                "dry_run": dry_run or None,
            }
        )
        data, headers = json_body(encode_json(body))
        response = await self._transport.request(
            "POST", "/v1/tools/write", data=data, headers=headers
        )
        return self._parse(response, builtins.list[dict[str, Any]])

    async def batch_write(
        self,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        mode: str = "insert",
        match_on: Mapping[str, Sequence[str]] | None = None,
        job_execution_id: str | None = None,
        job_name: str | None = None,
        return_records: bool = False,
        dry_run: bool = False,
    ) -> BatchWriteResult:
        """Deprecated: write rows to several tables through the hosted ``tools/batch-write``.

        Use :meth:`transact` (``data/write``). Tables are written in foreign-key order; rows
        may label themselves with ``_ref`` and be referred to as ``@label``, and a foreign key
        may name a row by its natural key (the referenced table's unique text column, else
        ``name``). One request, one transaction (a body under 4.5 MB).

        Args:
            tables: Table -> rows.
            mode: ``insert`` or ``upsert``.
            match_on: Table -> the columns an upsert matches rows on (default: primary key).
            job_execution_id: Record the write under this execution (default: the enclosing
                ``jobs.track``'s, else ``LABRIC_JOB_EXECUTION_ID``, else a new one, returned).
            job_name: The job of a new execution.
            return_records: Return the written rows per table.
            dry_run: Validate, roll back and return the plan.

        Raises:
            BadRequestError: problems with the rows (``detail`` and the body's ``errors``).
        """
        warnings.warn(
            "datasets.batch_write() uses the deprecated tools/batch-write route; use "
            "datasets.transact() (data/write) instead",
            DeprecationWarning,
            stacklevel=2,
        )
        options = _compact(
            {
                "mode": mode,
                "match_on": {k: builtins.list(v) for k, v in match_on.items()}
                if match_on
                else None,
                "job_execution_id": job_execution_id or current_execution_id(),
                "job_name": job_name,
                "return_records": return_records or None,
                "dry_run": dry_run or None,
            }
        )
        body = {
            "tables": {name: [dict(row) for row in rows] for name, rows in tables.items()},
            "options": options,
        }
        data, headers = json_body(encode_json(body))
        response = await self._transport.request(
            "POST", "/v1/tools/batch-write", data=data, headers=headers
        )
        return self._parse(response, BatchWriteResult)

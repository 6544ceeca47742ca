"""Batched dataset writes: any number of rows, split into ``data/write`` requests within limits.

``client.datasets.write`` hands its rows here. The hosted route takes bodies under 4.5 MB and at
most 10,000 rows per request, so the rows are encoded one at a time with a compact JSON encoder
and gathered into a batch until the next row would break either limit (the body size is measured
on the exact bytes that will be sent). Rows are pulled lazily from the iterable (or async
iterable), so a generator of millions of rows is never held in memory: at most the batch being
sent and the one being filled.

Batches go out strictly in order, one request each. While a batch's request is in flight the next
batch is encoded (the encoder yields to the event loop every few hundred rows), so encoding and the
server's work overlap. The first request without an execution lets the server open one; every
later batch is recorded under the same execution, so the whole write can be reverted as a unit.

Each request is one transaction on the server, and retries reuse its ``Idempotency-Key``, so a
retried batch is applied once. If a batch fails, nothing after it is sent and
:class:`WriteBatchError` says exactly which input rows were committed (the batch boundaries),
which batch failed (or, when no answer came, may or may not have been committed), and that the
rest were not written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from labric.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    LabricError,
)
from labric.models.datasets import WriteBatch, WriteProgress, WriteResult, WriteSummary

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ROWS",
    "ResendableBody",
    "WriteBatchError",
    "encode_json",
    "json_body",
    "write_batches",
]

#: Request bodies must be smaller than this (hosted ``data/write``: under 4.5 MB).
MAX_BODY_BYTES = 4_500_000
#: The most rows one request may carry.
MAX_ROWS = 10_000
#: Rows encoded between two yields to the event loop.
_YIELD_EVERY = 500
#: Room kept in the envelope for the execution id learnt after the first batch.
_ID_ROOM = 96

ProgressCallback = Callable[[WriteProgress], Any]
Sender = Callable[[bytes], Awaitable[tuple[WriteResult, int]]]


def _default(value: Any) -> Any:
    """JSON for the non-JSON values rows commonly hold."""
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        text = when.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, with datetimes, dates, UUIDs, enums and decimals converted.

    Raises:
        TypeError: a value JSON cannot represent.
        ValueError: NaN or an infinity (send ``None`` for a missing number).
    """
    return _ENCODER.encode(value).encode()


class ResendableBody:
    """A request body sent in chunks, afresh on every attempt.

    aiohttp warns about (and sends in one piece) bytes bodies over 1 MiB, and a file-like body
    would be exhausted by a first attempt; iterating a fresh pass per send keeps retries whole.
    The caller sets ``Content-Length`` (:func:`json_headers`), so the body is not chunk-encoded.
    """

    CHUNK = 256 * 1024

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        view = memoryview(self.data)
        for start in range(0, len(view), self.CHUNK):
            yield bytes(view[start : start + self.CHUNK])


def json_body(data: bytes) -> tuple[bytes | ResendableBody, dict[str, str]]:
    """The ``data`` and headers to send encoded JSON with."""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
    if len(data) <= ResendableBody.CHUNK:
        return data, headers
    return ResendableBody(data), headers


class WriteBatchError(LabricError):
    """A batched write stopped part-way; the message says which rows were committed.

    Input rows are numbered from 0 in the order given. Rows ``[0, rows_committed)`` were
    committed, in the requests listed in :attr:`committed`; the rows of :attr:`failed` were not
    (or, when :attr:`uncertain`, may or may not have been: the request got no answer); no row
    after them was sent. The cause is chained (``__cause__``).

    Attributes:
        table: The table written.
        committed: The batches that were committed, in order.
        rows_committed: How many leading input rows were committed.
        failed: ``(start, stop)`` of the rows of the batch that failed, if a request failed.
        uncertain: Whether the failed batch may have been committed (no answer came).
        job_execution_id: The execution the committed batches were recorded under; revert it
            to undo them.
        dry_run: Whether this was a dry run (then nothing was committed in any case).
    """

    def __init__(
        self,
        message: str,
        *,
        table: str,
        committed: list[WriteBatch],
        failed: tuple[int, int] | None,
        uncertain: bool,
        job_execution_id: str | None,
        dry_run: bool,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.committed = committed
        self.rows_committed = committed[-1].stop if committed else 0
        self.failed = failed
        self.uncertain = uncertain
        self.job_execution_id = job_execution_id
        self.dry_run = dry_run


def _describe(
    table: str,
    committed: list[WriteBatch],
    failed: tuple[int, int] | None,
    uncertain: bool,
    execution: str | None,
    dry_run: bool,
    cause: BaseException,
) -> str:
    done = committed[-1].stop if committed else 0
    verb = "checked (dry run, nothing committed)" if dry_run else "committed"
    if committed:
        ranges = ", ".join(f"[{b.start}, {b.stop})" for b in committed)
        head = (
            f"Writing to {table} stopped: rows [0, {done}) were {verb} in {len(committed)} "
            f"request(s) (batches {ranges})"
        )
        if execution and not dry_run:
            head += f" under job execution {execution} (revert it to undo them)"
    else:
        head = f"Writing to {table} stopped: no row was {verb}"
    if failed is not None:
        if uncertain:
            tail = (
                f"; the request for rows [{failed[0]}, {failed[1]}) got no answer, so it may or "
                f"may not have been committed; rows from {failed[1]} on were not written"
            )
        else:
            tail = (
                f"; the request for rows [{failed[0]}, {failed[1]}) was rejected and nothing of "
                f"it was written; rows from {failed[0]} on were not written"
            )
    else:
        tail = f"; rows from {done} on were not written"
    return f"{head}{tail}. Cause: {cause}"


async def _rows_of(rows: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


class _Source:
    """Encodes rows into batches that fit the limits, pulling rows only as needed."""

    def __init__(self, rows: Iterable[Any] | AsyncIterable[Any], budget: int, max_rows: int):
        self._rows = _rows_of(rows)
        self._budget = budget
        self._max_rows = max_rows
        self._carry: bytes | None = None
        self.pulled = 0  # rows taken from the input so far
        self.exhausted = False

    async def aclose(self) -> None:
        await self._rows.aclose()  # type: ignore[attr-defined]

    async def next_batch(self) -> list[bytes]:
        """The next batch of encoded rows (empty when the input is exhausted).

        Raises:
            ValueError: a row that cannot be sent (not an object, not JSON, or too large alone).
        """
        batch: list[bytes] = []
        size = 0
        if self._carry is not None:
            batch.append(self._carry)
            size = len(self._carry)
            self._carry = None
        while len(batch) < self._max_rows and not self.exhausted:
            try:
                row = await anext(self._rows)
            except StopAsyncIteration:
                self.exhausted = True
                break
            index = self.pulled
            self.pulled += 1
            if not isinstance(row, Mapping):
                raise ValueError(f"row {index} is a {type(row).__name__}, not a mapping")
            try:
                encoded = encode_json(row)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"row {index} cannot be sent as JSON: {exc}") from exc
            if len(encoded) + 1 > self._budget:
                raise ValueError(
                    f"row {index} is {len(encoded):,} bytes as JSON, too large for one request "
                    f"(under {MAX_BODY_BYTES:,} bytes)"
                )
            if size + len(encoded) + 1 > self._budget:
                self._carry = encoded
                break
            batch.append(encoded)
            size += len(encoded) + 1
            if self.pulled % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the request in flight make progress
        return batch


def _envelope(
    table: str, options: Mapping[str, Any], execution: str | None, dry_run: bool
) -> tuple[bytes, bytes]:
    head = {"table": table, **{k: v for k, v in options.items() if v is not None}}
    prefix = b'{"tables":[' + encode_json(head)[:-1] + b',"rows":['
    tail: dict[str, Any] = {}
    if execution is not None:
        tail["job_execution_id"] = execution
    if dry_run:
        tail["dry_run"] = True
    suffix = b"]}]"
    if tail:
        suffix += b"," + encode_json(tail)[1:-1]
    return prefix, suffix + b"}"


async def write_batches(
    send: Sender,
    *,
    table: str,
    rows: Iterable[Any] | AsyncIterable[Any],
    options: Mapping[str, Any],
    job_execution_id: str | None,
    dry_run: bool,
    on_progress: ProgressCallback | None,
    max_body: int = MAX_BODY_BYTES,
    max_rows: int = MAX_ROWS,
) -> WriteSummary:
    """Write ``rows`` to ``table`` in as few requests as the limits allow, in order.

    Args:
        send: Posts one request body; returns the parsed result and the body size sent.
        table: The table.
        rows: Row mappings, from an iterable or an async iterable (consumed once, lazily).
        options: ``mode``, ``key``, ``on_match`` of every table write (``None`` left out).
        job_execution_id: Record every batch under this execution (default: the one the
            server opens for the first batch).
        dry_run: Validate without committing.
        on_progress: Called after each successful request.
        max_body: Bodies stay under this many bytes.
        max_rows: Rows per request.

    Raises:
        WriteBatchError: a request failed or a row could not be sent; the cause is chained.
    """
    execution = job_execution_id
    prefix, suffix = _envelope(table, options, execution or "x" * _ID_ROOM, dry_run)
    budget = max_body - 1 - len(prefix) - len(suffix)
    source = _Source(rows, budget, max_rows)
    batches: list[WriteBatch] = []
    ids: list[str] = []
    totals = {"created": 0, "updated": 0, "deleted": 0}
    cascaded: dict[str, int] = {}
    sent_bytes = 0
    started = time.monotonic()
    start = 0
    failed: tuple[int, int] | None = None
    uncertain = False

    def error(cause: BaseException) -> WriteBatchError:
        return WriteBatchError(
            _describe(table, batches, failed, uncertain, execution, dry_run, cause),
            table=table,
            committed=list(batches),
            failed=failed,
            uncertain=uncertain,
            job_execution_id=execution,
            dry_run=dry_run,
        )

    in_flight: asyncio.Task[tuple[WriteResult, int]] | None = None
    try:
        try:
            current = await source.next_batch()
        except ValueError as exc:
            raise error(exc) from exc
        while current:
            head, tail = _envelope(table, options, execution, dry_run)
            body = b"".join((head, b",".join(current), tail))
            stop = start + len(current)
            in_flight = asyncio.ensure_future(send(body))
            try:
                upcoming = await source.next_batch()
                encode_error: ValueError | None = None
            except ValueError as exc:
                upcoming, encode_error = [], exc
            try:
                result, size = await in_flight
            except (APIStatusError, APIConnectionError) as exc:
                failed = (start, stop)
                uncertain = isinstance(exc, APIConnectionError) or exc.status_code >= 500
                raise error(exc) from exc
            finally:
                in_flight = None
            if len(result.tables) != 1:
                # The batch was sent and answered 2xx, so it is committed, but the answer cannot
                # say how: report it as the failed (uncertain) batch rather than an IndexError.
                failed, uncertain = (start, stop), True
                odd = APIResponseValidationError(
                    f"The write answer holds {len(result.tables)} table results; expected 1"
                )
                raise error(odd) from odd
            table_result = result.tables[0]
            batch = WriteBatch(
                index=len(batches),
                start=start,
                stop=stop,
                created=table_result.created,
                updated=table_result.updated,
                deleted=table_result.deleted,
            )
            batches.append(batch)
            ids += table_result.ids
            totals["created"] += batch.created
            totals["updated"] += batch.updated
            totals["deleted"] += batch.deleted
            for name, count in (table_result.cascade_deleted or {}).items():
                cascaded[name] = cascaded.get(name, 0) + count
            if execution is None and not dry_run:
                execution = result.job_execution_id
            sent_bytes += size
            start = stop
            if on_progress is not None:
                elapsed = time.monotonic() - started
                event = WriteProgress(
                    table=table,
                    batch=batch,
                    rows_done=stop,
                    bytes_sent=sent_bytes,
                    requests=len(batches),
                    elapsed=elapsed,
                    rate=stop / elapsed if elapsed > 0 else 0.0,
                )
                try:
                    on_progress(event)
                except Exception as exc:
                    raise error(exc) from exc
            if encode_error is not None:
                raise error(encode_error) from encode_error
            current = upcoming
    finally:
        if in_flight is not None:
            in_flight.cancel()
            await asyncio.wait([in_flight])
        await source.aclose()
    return WriteSummary(
        table=table,
        job_execution_id=None if dry_run else execution,
        dry_run=dry_run,
        rows=start,
        requests=len(batches),
        created=totals["created"],
        updated=totals["updated"],
        deleted=totals["deleted"],
        cascade_deleted=cascaded,
        ids=ids,
        batches=batches,
    )

"""``client.datasets.write`` (batched), ``write_series`` and ``transact``, end to end."""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from labric import AsyncLabric, WriteBatchError
from labric.errors import BadRequestError, PayloadTooLargeError
from labric.models import SeriesWrite, TableWrite, WriteProgress, WriteSummary
from labric.resources._batching import MAX_BODY_BYTES, encode_json
from labric.server import LocalServer

from ._support import Wire


class Kind(enum.Enum):
    OD = "od"


def _samples(n: int, start: int = 0, pad: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + n):
        yield {"name": f"s{i:06}", "count": i, "label": "x" * pad}


async def test_write_splits_by_rows_and_reports_progress(
    tables: Wire, client: AsyncLabric, server: LocalServer
) -> None:
    events: list[WriteProgress] = []
    server.reset_stats()
    summary = await client.datasets.write("samples", _samples(25_000), on_progress=events.append)
    assert isinstance(summary, WriteSummary)
    assert (summary.rows, summary.created, summary.requests) == (25_000, 25_000, 3)
    assert [(b.start, b.stop) for b in summary.batches] == [
        (0, 10_000),
        (10_000, 20_000),
        (20_000, 25_000),
    ]
    assert [e.rows_done for e in events] == [10_000, 20_000, 25_000]
    assert events[-1].requests == 3
    assert events[-1].bytes_sent > 0
    assert len(summary.ids) == 25_000
    assert server.stats["requests"]["by_route"]["POST /api/v1/data/write"] == 3
    # Every batch went under the one execution the first request opened.
    assert summary.job_execution_id is not None
    reverted = await tables.post(f"/v1/job-executions/{summary.job_execution_id}/revert")
    assert reverted.json()["deleted_count"] == 25_000


async def test_write_splits_by_body_size(tables: Wire, client: AsyncLabric) -> None:
    # ~1 KB rows: the 4.5 MB body limit, not the row limit, decides the batches.
    summary = await client.datasets.write("samples", _samples(12_000, pad=1000))
    assert summary.requests == 3
    assert all(b.stop - b.start < 10_000 for b in summary.batches)
    assert await tables.scalar("SELECT count(*) FROM samples") == 12_000


async def test_write_from_an_async_iterable_with_python_values(
    tables: Wire, client: AsyncLabric
) -> None:
    async def rows() -> AsyncIterator[dict[str, Any]]:
        yield {
            "name": "a",
            "taken_at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            "label": Kind.OD,
            "extra": {"id": uuid.UUID(int=1), "d": date(2025, 1, 2)},
            "od600": Decimal("0.5"),
        }

    summary = await client.datasets.write("samples", rows())
    assert summary.created == 1
    (row,) = [r async for r in client.datasets.rows("samples")]
    assert row["taken_at"] == "2025-01-02T03:04:05.000000Z"
    assert row["label"] == "od"
    assert row["extra"] == {"id": "00000000-0000-0000-0000-000000000001", "d": "2025-01-02"}
    assert row["od600"] == 0.5


async def test_every_mode_through_write(tables: Wire, client: AsyncLabric) -> None:
    await client.datasets.write("samples", [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}])
    await client.datasets.write("measurements", [{"sample": "a"}])
    upserted = await client.datasets.write(
        "samples",
        [{"name": "A", "count": 1}, {"name": "C", "count": 3}],
        mode="upsert",
        key=["name"],
    )
    assert (upserted.created, upserted.updated) == (1, 1)
    filled = await client.datasets.write(
        "samples", [{"id": "a", "count": 9, "label": "l"}], mode="update", on_match="fill_missing"
    )
    assert filled.updated == 1
    (a,) = [r async for r in client.datasets.rows("samples", filters={"id": "a"})]
    assert (a["count"], a["label"]) == (1, "l")
    deleted = await client.datasets.write("samples", [{"id": "a"}], mode="delete", cascade=True)
    assert (deleted.deleted, deleted.cascade_deleted) == (1, {"measurements": 1})
    assert deleted.ids == ["a"]


async def test_a_failed_batch_says_what_was_committed(tables: Wire, client: AsyncLabric) -> None:
    def rows() -> Iterator[dict[str, Any]]:
        yield from _samples(15_000)
        yield {"name": 5}  # row 15,000 is invalid: the second batch is rejected
        yield from _samples(10_000, start=20_000)

    with pytest.raises(WriteBatchError) as caught:
        await client.datasets.write("samples", rows())
    error = caught.value
    assert error.rows_committed == 10_000
    assert [(b.start, b.stop) for b in error.committed] == [(0, 10_000)]
    assert error.failed == (10_000, 20_000)
    assert error.uncertain is False
    assert isinstance(error.__cause__, BadRequestError)
    assert error.__cause__.detail == [
        {"path": "tables[0].rows[5000].name", "message": "name: expected a string, got an integer"}
    ]
    message = str(error)
    assert "rows [0, 10000) were committed in 1 request(s)" in message
    assert f"under job execution {error.job_execution_id}" in message
    assert "rows from 10000 on were not written" in message
    assert await tables.scalar("SELECT count(*) FROM samples") == 10_000


async def test_an_unsendable_row_stops_the_write(tables: Wire, client: AsyncLabric) -> None:
    rows = [{"name": "a"}, {"name": "b", "od600": math.nan}]
    with pytest.raises(WriteBatchError) as caught:
        await client.datasets.write("samples", rows)
    assert "row 1 cannot be sent as JSON" in str(caught.value)
    assert caught.value.rows_committed == 0
    assert await tables.scalar("SELECT count(*) FROM samples") == 0
    with pytest.raises(WriteBatchError, match="row 0 is a list, not a mapping"):
        await client.datasets.write("samples", [["a"]])  # type: ignore[list-item]
    with pytest.raises(WriteBatchError, match="too large for one request"):
        await client.datasets.write("samples", [{"name": "x" * MAX_BODY_BYTES}])


async def test_dry_run_and_execution_defaults(
    tables: Wire, client: AsyncLabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    dry = await client.datasets.write("samples", _samples(3), dry_run=True)
    assert (dry.dry_run, dry.job_execution_id, dry.created) == (True, None, 3)
    assert await tables.scalar("SELECT count(*) FROM samples") == 0
    execution = await client.jobs.executions.start(job_name="env")
    monkeypatch.setenv("LABRIC_JOB_EXECUTION_ID", execution.job_execution_id)
    summary = await client.datasets.write("samples", _samples(2))
    assert summary.job_execution_id == execution.job_execution_id
    assert (await client.datasets.write("samples", [])).requests == 0


async def test_write_series_and_transact(tables: Wire, client: AsyncLabric) -> None:
    result = await client.datasets.transact(
        [
            TableWrite(table="samples", rows=[{"_ref": "s", "name": "S"}]),
            TableWrite(table="measurements", rows=[{"sample": "@s", "value": 1.0}]),
        ],
        series=[SeriesWrite(table="readings", parent="@s", columns={"value": [1.0, 2.0]})],
        job_name="transact",
        return_rows=True,
    )
    sample_id = result.refs["s"]
    assert result.tables[1].rows is not None
    assert result.tables[1].rows[0]["sample"] == sample_id
    assert result.series[0].points_written == 2
    again = await client.datasets.write_series(
        "readings", parent={"name": "S"}, columns={"value": [5.0, 6.0, 7.0]}
    )
    assert again.series[0].points_replaced == 2
    assert await tables.scalar("SELECT group_concat(value) FROM readings") == "5.0,6.0,7.0"
    with pytest.raises(ValueError, match="cannot be split"):
        await client.datasets.write_series("readings", parent="x", columns={"v": [0] * 250_001})
    with pytest.raises(ValueError, match=r"Use datasets\.write"):
        await client.datasets.transact(
            [TableWrite(table="samples", rows=[{"name": "x" * MAX_BODY_BYTES}])]
        )


async def test_limits_are_enforced_server_side_for_raw_requests(
    tables: Wire, client: AsyncLabric
) -> None:
    with pytest.raises(PayloadTooLargeError, match="at most 10,000 rows"):
        await client.datasets.transact(
            [TableWrite(table="samples", rows=[{"name": str(i)} for i in range(10_001)])]
        )


def test_encoding_is_compact() -> None:
    assert encode_json({"a": [1, 2.5, None, True], "é": "ü"}) == (
        '{"a":[1,2.5,null,true],"é":"ü"}'.encode()
    )

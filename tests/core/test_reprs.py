"""Reprs say what matters in a few hundred characters: counts, first items, a pager's progress."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from labric import Labric
from labric.models import JobExecution
from labric.models._base import MAX_REPR
from labric.models.datasets import QueryResult, TableWriteResult, WriteBatch, WriteSummary
from labric.models.files import UploadURL
from labric.server import ThreadedServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(tmp_path / "server") as srv:
        yield srv


def test_a_20000_row_write_summary_is_short_and_keeps_the_counts() -> None:
    ids = [f"row_{i:08d}" for i in range(20_000)]
    batches = [
        WriteBatch(index=i, start=i * 5000, stop=(i + 1) * 5000, created=5000, updated=0, deleted=0)
        for i in range(4)
    ]
    summary = WriteSummary(
        table="samples",
        rows=20_000,
        requests=4,
        created=20_000,
        updated=0,
        deleted=0,
        ids=ids,
        batches=batches,
    )
    text = repr(summary)
    assert len(text) <= MAX_REPR
    assert text.startswith("WriteSummary(table='samples'")
    assert "rows=20000" in text
    assert "'row_00000000', 'row_00000001', 'row_00000002', … +19997 more" in text


def test_a_large_query_result_is_short() -> None:
    result = QueryResult(columns=["id", "note"], data=[[i, "n" * 500] for i in range(200_000)])
    text = repr(result)
    assert len(text) <= MAX_REPR
    assert "columns=['id', 'note']" in text
    assert "… +199997 more" in text


def test_short_models_keep_attrs_repr_and_hidden_fields_stay_hidden() -> None:
    result = TableWriteResult(table="t", created=1, updated=0, deleted=0, ids=["a"])
    fields = ", ".join(f"{f.name}={getattr(result, f.name)!r}" for f in attrs.fields(type(result)))
    assert repr(result) == f"TableWriteResult({fields})"
    ticket = UploadURL(
        upload_url="https://storage.example/o?X-Signature=SECRET",
        file_id="f1",
        headers={"a": "b"},
        expires_at="2030-01-01T00:00:00Z",
    )
    assert "SECRET" not in repr(ticket)
    execution = JobExecution(job_execution_id="e1", job_id="j1", job_name="n", file_ids=["f"] * 50)
    assert "… +47 more" in repr(execution)


def test_pagers_show_what_they_list_and_how_far(server: ThreadedServer) -> None:
    with Labric(server.admin_key, base_url=server.base_url) as client:
        for n in range(5):
            client.files.upload(b"x", name=f"f{n}.txt")
        pager = client.files.list(page_size=2)
        assert repr(pager) == "<SyncPager GET /v1/files limit=None: not fetched yet>"
        first = next(iter(pager))
        assert first.file_id
        assert repr(pager).startswith("<SyncPager GET /v1/files limit=None: 1 page fetched")
        assert "more to fetch" in repr(pager)
        assert len(list(pager)) == 5
        assert "exhausted" in repr(pager)
        limited = client.files.list(limit=3, page_size=2)
        assert len(list(limited)) == 3
        assert repr(limited) == (
            "<SyncPager GET /v1/files limit=3: 2 pages fetched, 3 items yielded, exhausted>"
        )


async def test_async_pager_repr(server: ThreadedServer) -> None:
    from labric import AsyncLabric

    async with AsyncLabric(server.admin_key, base_url=server.base_url) as client:
        await client.files.upload(b"x", name="a.txt")
        pager = client.files.list()
        assert [f async for f in pager]
        assert repr(pager) == (
            "<AsyncPager GET /v1/files limit=None: 1 page fetched, 1 item yielded, exhausted>"
        )

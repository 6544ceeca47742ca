"""``jobs.track()``: an off-platform execution around a block of code, async and sync."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import AsyncLabric, Labric
from labric._core.context import current_execution_id
from labric.models.jobs import ExecutionStatus
from labric.server import ThreadedServer

DATA = b"a,b\n1,2\n"


class Boom(Exception):
    pass


async def test_track_closes_completed_and_attributes_uploads(pclient: AsyncLabric) -> None:
    async with pclient.jobs.track(job_name="nightly-import") as execution:
        assert current_execution_id() == execution.job_execution_id
        assert execution.status is ExecutionStatus.RUNNING
        upload = await pclient.files.upload(DATA, name="summary.csv")
        outcomes = await pclient.files.upload_many([("a.txt", b"a"), ("b.txt", b"b")])
    assert current_execution_id() is None
    closed = await pclient.jobs.executions.get(execution.job_execution_id)
    assert closed.status is ExecutionStatus.COMPLETED
    assert closed.job_name == "nightly-import"
    assert closed.off_platform is True
    attributed = {upload.file_id, *(o.file.file_id for o in outcomes if o.file is not None)}
    for file_id in attributed:
        assert (await pclient.files.get(file_id)).job_execution_id == execution.job_execution_id
    assert len(attributed) == 3
    # An explicit id still wins inside the block.
    async with pclient.jobs.track(job_id=execution.job_id) as second:
        own = await pclient.jobs.executions.start(job_name="elsewhere")
        explicit = await pclient.files.upload(
            DATA, name="x.csv", job_execution_id=own.job_execution_id
        )
    assert second.job_id == execution.job_id
    assert (await pclient.files.get(explicit.file_id)).job_execution_id == own.job_execution_id


async def test_track_closes_failed_when_the_block_raises(pclient: AsyncLabric) -> None:
    opened: list[str] = []

    async def parse() -> None:
        async with pclient.jobs.track(job_name="fragile") as execution:
            opened.append(execution.job_execution_id)
            await pclient.files.upload(DATA, name="partial.csv")
            raise Boom("the parser choked")

    with pytest.raises(Boom, match="choked"):
        await parse()
    failed = await pclient.jobs.executions.get(opened[0])
    assert failed.status is ExecutionStatus.FAILED
    assert current_execution_id() is None
    with pytest.raises(ValueError, match="exactly one"):
        async with pclient.jobs.track():
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="exactly one"):
        async with pclient.jobs.track(job_name="a", job_id="b"):
            pass  # pragma: no cover


async def test_track_is_local_to_its_task(pclient: AsyncLabric) -> None:
    inside = asyncio.Event()
    leave = asyncio.Event()
    seen: dict[str, str | None] = {}

    async def tracked() -> str:
        async with pclient.jobs.track(job_name="outer") as outer:
            async with pclient.jobs.track(job_name="inner") as inner:
                seen["inner"] = current_execution_id()
                child = asyncio.create_task(asyncio.sleep(0, result=current_execution_id()))
                seen["child"] = await child  # tasks started inside inherit it
                assert inner.job_execution_id != outer.job_execution_id
            seen["outer"] = current_execution_id()
            inside.set()
            await leave.wait()
            return outer.job_execution_id

    async def bystander() -> None:
        await inside.wait()
        seen["bystander"] = current_execution_id()
        leave.set()

    outer_id, _ = await asyncio.gather(tracked(), bystander())
    assert seen["outer"] == outer_id
    assert seen["inner"] == seen["child"] != outer_id
    assert seen["bystander"] is None


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(tmp_path / "threaded", max_concurrent_executions=0) as server:
        yield server


def test_sync_track(threaded: ThreadedServer) -> None:
    with Labric(threaded.admin_key, base_url=threaded.base_url) as client:
        with client.jobs.track(job_name="sync-import") as execution:
            upload = client.files.upload(DATA, name="sync.csv")
        assert client.files.get(upload.file_id).job_execution_id == execution.job_execution_id
        done = client.jobs.executions.get(execution.job_execution_id)
        assert done.status is ExecutionStatus.COMPLETED
        with pytest.raises(Boom), client.jobs.track(job_name="sync-import") as failing:
            raise Boom
        failed = client.jobs.executions.get(failing.job_execution_id)
        assert failed.status is ExecutionStatus.FAILED
        assert current_execution_id() is None


async def test_track_covers_dataset_writes(pclient: AsyncLabric) -> None:
    await pclient.datasets.create("tracked_rows", columns=[{"name": "v", "type": "integer"}])
    async with pclient.jobs.track(job_name="writer") as execution:
        written = await pclient.datasets.write("tracked_rows", [{"v": 1}, {"v": 2}])
    assert written.job_execution_id == execution.job_execution_id
    reverted = await pclient.jobs.executions.revert(execution.job_execution_id)
    assert reverted.deleted_count == 2

"""Files end to end over real sockets: every source kind, attribution, parts, downloads."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.errors import NotFoundError
from labric.models import TransferPhase, TransferProgress
from labric.server import LocalServer

from .conftest import PART, admin_call, make_client


class _Pipe(io.RawIOBase):
    """A readable, non-seekable binary stream (like a pipe or a socket)."""

    def __init__(self, data: bytes, name: str) -> None:
        self._data = io.BytesIO(data)
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


async def test_every_source_kind_round_trips(
    tclient: AsyncLabric, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("plate.csv", 70_000)
    payload = path.read_bytes()

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 5000):
            yield payload[start : start + 5000]

    with open(path, "rb") as fh:
        uploads = [
            await tclient.files.upload(path),
            await tclient.files.upload(payload, name="bytes.csv"),
            await tclient.files.upload(fh, name="fileobj.csv"),
            await tclient.files.upload(_Pipe(payload, "pipe.csv")),
            await tclient.files.upload(stream(), name="stream.csv"),
            await tclient.files.upload(b"", name="empty.txt"),
        ]
    names = [u.file_name for u in uploads]
    assert names == ["plate.csv", "bytes.csv", "fileobj.csv", "pipe.csv", "stream.csv", "empty.txt"]
    expected_crc = crc32c_to_b64(crc32c(payload))
    for upload in uploads[:-1]:
        assert upload.size_bytes == len(payload)
        assert upload.crc32c_hash == expected_crc
        assert await tclient.files.read_bytes(upload.file_id) == payload
    assert await tclient.files.read_bytes(uploads[-1].file_id) == b""
    info = await tclient.files.get(uploads[0].file_id)
    assert info.content_type == "text/csv"
    listed = {f.file_id async for f in tclient.files.list()}
    assert listed == {u.file_id for u in uploads}


async def test_upload_opens_and_closes_an_execution(
    tclient: AsyncLabric, parts_server: LocalServer
) -> None:
    upload = await tclient.files.upload(b"1,2,3", name="a.csv")
    info = await tclient.files.get(upload.file_id)
    assert info.job_execution_id is not None
    # Closed as completed: the same status again is a no-op, another is refused.
    path = f"/v1/job-executions/{info.job_execution_id}"
    status, body = await admin_call(parts_server, "PATCH", path, {"status": "completed"})
    assert status == 200
    assert body["status"] == "completed"  # type: ignore[index]
    status, _ = await admin_call(parts_server, "PATCH", path, {"status": "failed"})
    assert status == 400


async def test_failed_bulk_upload_closes_its_execution_failed(
    tclient: AsyncLabric, parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    good = make_file("good.csv", 100)
    outcomes = await tclient.files.upload_many([good, tmp_path / "missing.csv"])
    assert [o.ok for o in outcomes] == [True, False]
    assert isinstance(outcomes[1].error, FileNotFoundError)
    assert outcomes[0].file is not None
    info = await tclient.files.get(outcomes[0].file.file_id)
    path = f"/v1/job-executions/{info.job_execution_id}"
    status, body = await admin_call(parts_server, "PATCH", path, {"status": "failed"})
    assert status == 200
    assert body["status"] == "failed"  # type: ignore[index]


async def test_given_and_environment_attribution(
    tclient: AsyncLabric, parts_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    execution = await tclient.jobs.executions.start(job_name="nightly")
    monkeypatch.setenv("LABRIC_JOB_EXECUTION_ID", execution.job_execution_id)
    from_env = await tclient.files.upload(b"x", name="env.txt")
    assert (await tclient.files.get(from_env.file_id)).job_execution_id == (
        execution.job_execution_id
    )
    monkeypatch.delenv("LABRIC_JOB_EXECUTION_ID")
    instrument = parts_server.create_instrument("plate reader")
    attached = await tclient.files.upload(b"y", name="reader.txt", instrument_id=instrument)
    info = await tclient.files.get(attached.file_id)
    assert info.source_instrument_id == instrument
    assert [f.file_id async for f in tclient.files.list(instrument_id=instrument)] == [
        attached.file_id
    ]


async def test_multipart_upload_and_ranged_download(
    tclient: AsyncLabric, parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    size = 13 * PART + 12_345
    path = make_file("run.raw", size)
    events: list[TransferProgress] = []
    upload = await tclient.files.upload(path, on_progress=events.append)
    stats = parts_server.stats["storage"]
    assert len(stats["part_puts_by_file"][upload.file_id]) == 14
    assert stats["bytes_received_by_file"][upload.file_id] == size
    assert upload.crc32c_hash == crc32c_to_b64(crc32c(path.read_bytes()))
    assert events[0].phase == TransferPhase.STARTED
    assert events[-1].phase == TransferPhase.COMPLETED
    assert events[-1].total_bytes_done == size

    dest = tmp_path / "out" / "run.raw"
    dest.parent.mkdir()
    got = await tclient.files.download(upload.file_id, dest)
    assert got == dest
    assert dest.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["run.raw"]  # no temporary file left
    # A directory destination keeps the file's own name; an existing file is not replaced.
    with pytest.raises(FileExistsError):
        await tclient.files.download(upload.file_id, dest.parent)
    again = await tclient.files.download(upload.file_id, dest.parent, overwrite=True)
    assert again == dest


async def test_bulk_round_trip_keeps_relative_paths(
    tclient: AsyncLabric, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    run = tmp_path / "src" / "run7"
    for plate in range(3):
        for read in range(4):
            make_file(f"plate{plate}/read{read}.csv", 2000 + read, folder=run)
    make_file("raw.bin", 3 * PART, folder=run)
    events: list[TransferProgress] = []
    uploads = await tclient.files.upload_many([run], on_progress=events.append)
    assert all(o.ok for o in uploads)
    assert {o.file.file_name for o in uploads if o.file} >= {"read0.csv", "raw.bin"}
    assert events[-1].files_done == 13
    assert events[-1].files_total == 13

    ids = [o.file.file_id for o in uploads if o.file]
    downloads = await tclient.files.download_many(ids, tmp_path / "back")
    assert all(d.ok for d in downloads), [d.error for d in downloads if not d.ok]
    for up, down in zip(uploads, downloads, strict=True):
        assert down.path is not None
        source = Path(str(up.source))
        assert Path(down.path).relative_to(tmp_path / "back") == source.relative_to(run.parent)
        assert Path(down.path).read_bytes() == source.read_bytes()

    # Nothing changed: a second pass skips every file on both sides.
    again = await tclient.files.download_many(ids, tmp_path / "back", skip_existing=True)
    assert all(d.skipped for d in again)
    re_up = await tclient.files.upload_many([run], skip_existing=True)
    assert all(o.skipped for o in re_up)


async def test_confirmed_upload_is_never_sent_twice(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("once.csv", 5000)
    async with make_client(parts_server, tmp_path / "state") as client:
        first = await client.files.upload(path)
    parts_server.reset_stats()
    async with make_client(parts_server, tmp_path / "state") as client:
        outcomes = await client.files.upload_many([path])
    assert outcomes[0].skipped
    assert outcomes[0].file is not None
    assert outcomes[0].file.file_id == first.file_id
    assert parts_server.stats["storage"]["bytes_received"] == 0
    # Once it is gone from the platform, it is uploaded again.
    async with make_client(parts_server, tmp_path / "state") as client:
        await client.files.delete(first.file_id)
        with pytest.raises(NotFoundError):
            await client.files.get(first.file_id)
        fresh = await client.files.upload(path)
    assert fresh.file_id != first.file_id


async def test_interrupted_download_leaves_no_final_file(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    from labric.server.core.faults import FaultConfig

    async with make_client(parts_server, tmp_path / "state", max_retries=0) as client:
        small = await client.files.upload(make_file("s.bin", 100_000))
        big = await client.files.upload(make_file("b.bin", 4 * PART))
        parts_server.faults.update(FaultConfig(reset=1.0, scope="storage", seed=3))
        for upload in (small, big):
            dest = tmp_path / "dl" / upload.file_name
            dest.parent.mkdir(exist_ok=True)
            with pytest.raises(Exception) as caught:
                await client.files.download(upload.file_id, dest)
            assert type(caught.value).__name__ in ("APIConnectionError", "TransferError")
            assert not dest.exists()
        parts_server.faults.update(FaultConfig())
        # The large one kept its temporary file and journal and resumes; the small one starts over.
        for upload in (small, big):
            dest = tmp_path / "dl" / upload.file_name
            await client.files.download(upload.file_id, dest)
            assert len(dest.read_bytes()) == upload.size_bytes
        assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["b.bin", "s.bin"]


async def test_cancelled_bulk_download_leaves_no_partial_final_files(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    from labric.server.core.faults import FaultConfig

    async with make_client(parts_server, tmp_path / "state") as client:
        ids = [
            (await client.files.upload(make_file(f"f{i}.bin", 3 * PART))).file_id for i in range(4)
        ]
        parts_server.faults.update(FaultConfig(bandwidth=400_000, scope="storage"))
        moving = asyncio.Event()

        def on_progress(event: TransferProgress) -> None:
            if event.total_bytes_done > 0:
                moving.set()

        task = asyncio.create_task(
            client.files.download_many(ids, tmp_path / "dl", on_progress=on_progress)
        )
        await moving.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        parts_server.faults.update(FaultConfig())
    finals = [p for p in (tmp_path / "dl").rglob("*") if p.is_file() and p.suffix != ".labric-part"]
    assert finals == []

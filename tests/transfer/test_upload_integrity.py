"""Uploads never confirm a mix of two versions of a file, against the local server.

A resume journal is keyed by path, size and mtime, which a rewrite can keep (``cp -p``,
``rsync -t``, coarse clocks): these tests rewrite a file that way between an interrupted upload
and its rerun, or while it is being sent, and check what the server ends up holding.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.errors import TransferError
from labric.server import FaultConfig, LocalServer

from .conftest import PART, admin_call, make_client

SIZE = 12 * PART


async def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition the server's counters will satisfy (bounded; not a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def _wait_for_stored_parts(server: LocalServer, task: asyncio.Future[object]) -> str:
    """Wait until the server holds a few parts of the one upload in flight; its file id."""
    await _wait_for(lambda: bool(server.stats["storage"]["part_puts_by_file"]) or task.done())
    assert not task.done(), task
    (file_id,) = server.stats["storage"]["part_puts_by_file"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while True:
        status, body = await admin_call(server, "GET", f"/v1/files/{file_id}/upload-status")
        assert status == 200, body
        assert isinstance(body, dict)
        if len(body["parts"]) >= 2:
            return str(file_id)
        assert loop.time() < deadline, "no part was stored in time"
        assert not task.done(), task


async def _interrupt_upload(server: LocalServer, state: Path, path: Path, **kwargs: object) -> str:
    """Start an upload, cancel it once a few parts are stored; returns the pending file id."""
    server.faults.update(FaultConfig(bandwidth=1_000_000, scope="storage"))
    async with make_client(server, state) as client:
        task = asyncio.ensure_future(client.files.upload(path, **kwargs))  # type: ignore[arg-type]
        try:
            file_id = await _wait_for_stored_parts(server, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    server.faults.update(FaultConfig())
    return file_id


def _rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    """Replace a file's bytes, then put its old mtime back (as ``cp -p`` or ``rsync -t`` do)."""
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


class Crash(Exception):
    """The process dying at a chosen point."""


def _crash_at_confirm(client: AsyncLabric) -> None:
    """Make the client fail as a killed process would, right before it confirms an upload."""
    context = client.files._engine._context
    real_api = context.api

    async def api(method: str, path: str, **kwargs: object) -> object:
        if path.endswith("/confirm-upload"):
            raise Crash
        return await real_api(method, path, **kwargs)  # type: ignore[arg-type]

    context.api = api  # type: ignore[method-assign]


async def _stored_bytes(client: AsyncLabric, file_id: str) -> bytes:
    return await client.files.read_bytes(file_id)


async def test_resume_after_a_same_size_same_mtime_rewrite_uploads_the_new_version(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("run.raw", SIZE)
    state = tmp_path / "state"
    old_id = await _interrupt_upload(parts_server, state, path)
    async with make_client(parts_server, state) as client:
        status = await client.files.upload_status(old_id)
        assert 0 < len(status.parts) < SIZE // PART  # interrupted with some parts stored

        new = os.urandom(SIZE)
        _rewrite_keeping_mtime(path, new)
        upload = await client.files.upload(path)

        assert upload.crc32c_hash == crc32c_to_b64(crc32c(new))
        assert await _stored_bytes(client, upload.file_id) == new
        # The stale parts were not reused: this is a fresh upload, and the old one never
        # became a file.
        assert upload.file_id != old_id
        assert (await client.files.upload_status(old_id)).status == "pending"


async def test_resume_on_an_instrument_path_resends_only_the_parts_that_changed(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    instrument = parts_server.create_instrument("plate reader")
    path = make_file("plate.raw", SIZE)
    state = tmp_path / "state"
    file_id = await _interrupt_upload(parts_server, state, path, instrument_id=instrument)
    async with make_client(parts_server, state) as client:
        status = await client.files.upload_status(file_id)
        held = sorted(p.number for p in status.parts)
        assert held
        # Change the first stored part only, keeping size and mtime.
        changed = held[0]
        data = bytearray(path.read_bytes())
        start = (changed - 1) * PART
        data[start : start + PART] = os.urandom(PART)
        _rewrite_keeping_mtime(path, bytes(data))
        parts_server.reset_stats()

        upload = await client.files.upload(path, instrument_id=instrument)

        assert upload.crc32c_hash == crc32c_to_b64(crc32c(bytes(data)))
        assert await _stored_bytes(client, upload.file_id) == bytes(data)
    # The server kept the parts of its pending upload on that path: the same file id, the
    # changed part replaced, the unchanged stored parts not sent again.
    assert upload.file_id == file_id
    resent = {int(n) for n in parts_server.stats["storage"]["part_puts_by_file"][file_id]}
    assert changed in resent
    assert not (set(held) - {changed}) & resent


async def test_resume_of_an_unchanged_file_still_skips_its_stored_parts(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("same.raw", SIZE)
    state = tmp_path / "state"
    file_id = await _interrupt_upload(parts_server, state, path)
    async with make_client(parts_server, state) as client:
        stored = sum(p.size for p in (await client.files.upload_status(file_id)).parts)
        parts_server.reset_stats()
        upload = await client.files.upload(path)
    assert upload.file_id == file_id
    assert parts_server.stats["storage"]["bytes_received_by_file"][file_id] == SIZE - stored
    assert upload.crc32c_hash == crc32c_to_b64(crc32c(path.read_bytes()))


async def test_a_confirmed_upload_rewritten_with_its_old_mtime_is_uploaded_again(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("again.raw", SIZE)
    async with make_client(parts_server, tmp_path / "state") as client:
        first = await client.files.upload(path)
        new = os.urandom(SIZE)
        _rewrite_keeping_mtime(path, new)
        second = await client.files.upload(path)
        assert second.file_id != first.file_id
        assert second.crc32c_hash == crc32c_to_b64(crc32c(new))
        # And unchanged, it is recognised as already there.
        outcomes = await client.files.upload_many([path])
        assert outcomes[0].skipped
        assert outcomes[0].file is not None
        assert outcomes[0].file.file_id == second.file_id


async def test_a_single_put_journalled_before_confirm_is_not_confirmed_once_the_file_changed(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    """A crash between PUT and confirm, then a rewrite: the landed object is not confirmed."""
    path = make_file("small.raw", 3 * PART // 2)  # under the multipart threshold: one PUT
    state = tmp_path / "state"
    async with make_client(parts_server, state) as client:
        _crash_at_confirm(client)
        with pytest.raises(Crash):
            await client.files.upload(path)
    new = os.urandom(3 * PART // 2)
    _rewrite_keeping_mtime(path, new)
    async with make_client(parts_server, state) as client:
        upload = await client.files.upload(path)
        assert upload.crc32c_hash == crc32c_to_b64(crc32c(new))
        assert await _stored_bytes(client, upload.file_id) == new


async def test_a_single_put_journalled_before_confirm_is_confirmed_when_unchanged(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("small.raw", 3 * PART // 2)
    state = tmp_path / "state"
    async with make_client(parts_server, state) as client:
        _crash_at_confirm(client)
        with pytest.raises(Crash):
            await client.files.upload(path)
    parts_server.reset_stats()
    async with make_client(parts_server, state) as client:
        upload = await client.files.upload(path)
    assert upload.crc32c_hash == crc32c_to_b64(crc32c(path.read_bytes()))
    assert parts_server.stats["storage"]["bytes_received"] == 0  # confirmed, not re-sent


async def test_a_file_rewritten_while_its_parts_are_sent_fails_before_confirm(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("busy.raw", SIZE)
    parts_server.faults.update(FaultConfig(bandwidth=1_000_000, scope="storage"))
    async with make_client(parts_server, tmp_path / "state") as client:
        task = asyncio.ensure_future(client.files.upload(path))
        file_id = await _wait_for_stored_parts(parts_server, task)
        _rewrite_keeping_mtime(path, os.urandom(SIZE))
        parts_server.faults.update(FaultConfig())
        with pytest.raises(TransferError, match="changed while it was being uploaded"):
            await task
        assert (await client.files.upload_status(file_id)).status == "pending"


async def test_a_file_that_grows_while_it_is_sent_in_one_put_fails_before_confirm(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("log.txt", 3 * PART // 2)
    async with make_client(parts_server, tmp_path / "state") as client:
        progressed = False

        def grow(event: object) -> None:
            nonlocal progressed
            if not progressed:
                progressed = True
                with path.open("ab") as fh:
                    fh.write(b"more lines\n")

        with pytest.raises(TransferError, match="changed while it was being uploaded"):
            await client.files.upload(path, on_progress=grow)
        assert [f async for f in client.files.list()] == []

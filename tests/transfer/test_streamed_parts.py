"""Parts of a file on disk are checksummed, then streamed from it: never buffered whole.

A part is read twice (once for its CRC32C, once as the request body), so a write between the two
reads must not be stored: the server refuses a part whose bytes do not match the ``x-goog-hash``
sent ahead of them, and the client names the cause.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric._transfer.sources import _Source
from labric.errors import TransferError
from labric.server import LocalServer

from .conftest import PART, make_client

SIZE = 12 * PART + 123


async def test_a_file_upload_holds_chunks_not_parts(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    path = make_file("run.raw", SIZE)
    async with make_client(parts_server, tmp_path / "state") as client:
        upload = await client.files.upload(path)
        context = client.files._engine._context
        chunk = context.config.chunk_size
        # At most two chunks per request in flight were ever reserved, and no part buffer made.
        assert 0 < context.memory.peak <= 2 * chunk * context.limiter.ceiling
        assert context.memory.peak < PART * context.limiter.ceiling  # what whole parts took
        assert context.buffers.idle == 0
    assert upload.crc32c_hash == crc32c_to_b64(crc32c(path.read_bytes()))
    assert parts_server.stats["storage"]["bytes_received"] == SIZE  # each byte sent once


async def test_bytes_are_still_sent_from_memory_under_the_budget(
    parts_server: LocalServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    async with make_client(parts_server, tmp_path / "state") as client:
        upload = await client.files.upload(data, name="run.raw")
        context = client.files._engine._context
        assert context.memory.peak >= PART  # whole parts, sliced from the bytes given
    assert upload.crc32c_hash == crc32c_to_b64(crc32c(data))


async def test_a_part_rewritten_between_its_checksum_and_its_send_is_refused(
    parts_server: LocalServer,
    make_file: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = make_file("busy.raw", SIZE)
    real_range_crc = _Source.range_crc
    rewritten = False

    async def range_crc(self: _Source, offset: int, length: int, chunk: int) -> int:
        nonlocal rewritten
        crc = await real_range_crc(self, offset, length, chunk)
        if not rewritten:
            # Same size, same mtime: only the server's check of the part's bytes can tell.
            rewritten = True
            before = path.stat()
            with path.open("r+b") as fh:
                fh.seek(offset)
                fh.write(bytes(b ^ 0xFF for b in fh.read(16)))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        return crc

    monkeypatch.setattr(_Source, "range_crc", range_crc)
    async with make_client(parts_server, tmp_path / "state") as client:
        with pytest.raises(TransferError, match="changed while it was being uploaded"):
            await client.files.upload(path)
        assert [f async for f in client.files.list()] == []  # nothing confirmed
    assert rewritten

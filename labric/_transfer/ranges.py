"""Ranged downloads: concurrent ranges of one object version, written as they arrive.

A large object is fetched as ranges of ``part_size`` (:func:`download_ranges`), all pinned to one
ETag with ``If-Match``. The first range is fetched alone: it pins the version every other range
must match and confirms the object's size (the total of its ``Content-Range``), and only then is
disk preallocated for it, because until storage confirmed a size it is only a claim. Ranges are
computed by index, never planned up front, so a lied-about size costs nothing before it is checked.

Every ``206`` must carry exactly the range asked for (:func:`_check_range`), of the stated size, or
nothing of it is written. A response with another ETag, or a ``412`` to ``If-Match``, means the
object changed: :class:`_ObjectChanged` tells the caller to restart from scratch instead of mixing
versions. An object without an ETag cannot be pinned: :class:`_NoETag` tells the caller to fetch
it as one stream instead. Each finished range's CRC32C is journalled with the ETag, so an
interrupted download resumes with the ranges it has, and the whole object's CRC32C is combined
from the ranges' in order.

Bodies are received by :func:`receive`: pieces are batched and written with ``pwritev`` in a
worker thread while the next batch is received, one write in flight at a time so the CRC32C
chains in order and memory stays at two batches; a body longer than its limit fails as soon as
the first byte too many arrives, unwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from typing import Any

from labric._transfer.checksum import crc32c_combine, crc32c_extend, crc32c_from_b64, crc32c_to_b64
from labric._transfer.context import TransferContext, _goog_crc
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import _gather_all
from labric._transfer.tempfiles import _Temp, _to_thread_to_end
from labric.errors import APIStatusError, TransferError
from labric.models.files import FileContent

__all__ = ["download_ranges", "receive"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$")


class _ObjectChanged(Exception):
    """The object changed on the server mid-download (its ETag no longer matches)."""


class _NoETag(Exception):
    """The storage server gave no ETag, so ranges could not be pinned to one version."""


async def download_ranges(
    ctx: TransferContext, info: FileContent, size: int, temp: _Temp, progress: _Progress
) -> tuple[int, int | None]:
    """Concurrent ranges pinned to one ETag; the whole CRC32C and the storage's."""
    part_size = ctx.config.part_size
    count = -(-size // part_size)

    def span(index: int) -> tuple[int, int]:
        # Computed, not planned up front: a size is a claim until storage confirmed it, and
        # a list of ranges for a lied-about petabyte would itself fill memory.
        offset = index * part_size
        return offset, min(part_size, size - offset)

    entry = temp.entry
    fd = temp.fd
    etag: str | None = entry.get("etag") or None
    crcs: dict[int, int] = {
        int(k): crc32c_from_b64(v) for k, v in (entry.get("ranges") or {}).items()
    }
    goog = entry.get("goog")
    storage_crc: int | None = crc32c_from_b64(goog) if isinstance(goog, str) else None
    already = sum(span(i)[1] for i in crcs)
    progress.advance(info.file_id, already, already, size)
    done = [already]

    async def fetch_range(index: int) -> None:
        nonlocal etag, storage_crc
        offset, length = span(index)
        end = offset + length - 1
        headers = {"Range": f"bytes={offset}-{end}"}
        if etag is not None:
            headers["If-Match"] = etag
        got = [0]

        async def once() -> None:
            progress.total_done -= got[0]
            got[0] = 0

            async def fetch() -> None:
                nonlocal etag, storage_crc

                def moved(n: int) -> None:
                    got[0] += n
                    progress.advance(info.file_id, n, done[0] + got[0], size)

                async with (
                    ctx.memory.reserve(2 * ctx.config.chunk_size),
                    ctx.transport.stream("GET", info.download_url, headers=headers) as resp,
                ):
                    if resp.status != 206:
                        raise TransferError(
                            f"The storage server ignored a Range request for {info.file_id}"
                        )
                    _check_range(resp.headers.get("Content-Range"), offset, end, size, info)
                    if resp.content_length not in (None, length):
                        raise TransferError(
                            f"Range {offset}-{end} of {info.file_id} announces "
                            f"{resp.content_length} bytes"
                        )
                    tag = resp.headers.get("ETag")
                    if etag is None:
                        if not tag:
                            raise _NoETag
                        etag = tag
                        storage_crc = _goog_crc(resp.headers.get("x-goog-hash"))
                        # Only now is the size confirmed by storage: preallocate it.
                        await _to_thread_to_end(_preallocate, fd, size)
                    elif tag != etag:
                        raise _ObjectChanged
                    crc, received = await receive(
                        ctx, resp, fd, offset, moved, length, info.file_id
                    )
                if received != length:
                    raise TransferError(
                        f"Range {offset}-{end} of {info.file_id} returned {received} bytes"
                    )
                crcs[index] = crc

            try:
                await ctx.slot_call(fetch)
            except APIStatusError as exc:
                if exc.status_code == 412:
                    raise _ObjectChanged from exc
                raise

        await ctx.retrying(once, method="GET", url=info.download_url)
        done[0] += length
        entry.update(
            etag=etag,
            goog=crc32c_to_b64(storage_crc) if storage_crc is not None else None,
            ranges={str(i): crc32c_to_b64(c) for i, c in crcs.items()},
        )
        if temp.journalled:
            await ctx.journal.put("download", temp.key, dict(entry))

    if etag is None and count:
        # The first range pins the object version every other range must match, and
        # confirms the size before anything else is planned or allocated.
        await fetch_range(0)
    await _gather_all([fetch_range(i) for i in range(count) if i not in crcs])
    whole = 0
    for index in range(count):
        whole = crc32c_combine(whole, crcs[index], span(index)[1])
    return whole, storage_crc


async def receive(
    ctx: TransferContext,
    resp: Any,
    fd: int,
    offset: int,
    moved: Callable[[int], None],
    limit: int | None,
    file_id: str,
) -> tuple[int, int]:
    """Stream a response body into ``fd`` at ``offset``; return its CRC32C and length.

    Pieces are gathered (never concatenated) into batches of ``chunk_size`` and written with
    ``pwritev`` in a worker thread while the next batch is being received: one write in
    flight at a time, so the CRC chains in order and memory stays at two batches. A body
    longer than ``limit`` fails as soon as the first byte too many arrives, unwritten.
    """
    loop = asyncio.get_running_loop()
    chunk = ctx.config.chunk_size
    crc = 0
    total = 0
    writing: asyncio.Future[int] | None = None
    pieces: list[bytes] = []
    batched = 0
    try:
        async for piece in resp.content.iter_any():
            pieces.append(piece)
            batched += len(piece)
            if limit is not None and total + batched > limit:
                raise TransferError(
                    f"Storage sent more than the {limit} bytes stated for {file_id}"
                )
            if batched >= chunk:
                if writing is not None:
                    crc = await writing
                writing = loop.run_in_executor(None, _pwritev_crc, fd, pieces, offset + total, crc)
                total += batched
                moved(batched)
                pieces, batched = [], 0
        if writing is not None:
            crc = await writing
            writing = None
        if pieces:
            crc = await loop.run_in_executor(None, _pwritev_crc, fd, pieces, offset + total, crc)
            total += batched
            moved(batched)
    finally:
        if writing is not None and not writing.done():
            # Never close the file under a write still running in the worker thread.
            with contextlib.suppress(BaseException):
                await asyncio.shield(writing)
    return crc, total


def _check_range(header: str | None, offset: int, end: int, size: int, info: FileContent) -> None:
    """A ``206`` must carry exactly the range asked for, of an object of the stated size."""
    m = _CONTENT_RANGE.match(header or "")
    if m is None or (int(m[1]), int(m[2])) != (offset, end):
        raise TransferError(
            f"Storage answered range {offset}-{end} of {info.file_id} with "
            f"Content-Range {header!r}; nothing of it was written"
        )
    if int(m[3]) != size:
        raise TransferError(
            f"Storage says {info.file_id} is {m[3]} bytes, its stated size is {size}"
        )


def _pwritev_crc(fd: int, pieces: list[bytes], offset: int, crc: int) -> int:
    """Write ``pieces`` at ``offset`` (handling short writes) and extend ``crc`` over them."""
    views = [memoryview(p) for p in pieces if p]
    while views:
        written = os.pwritev(fd, views[:1024], offset)  # IOV_MAX is 1024 on Linux
        offset += written
        while written and views:
            if written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][written:]
                written = 0
    for piece in pieces:
        crc = crc32c_extend(crc, piece)
    return crc


def _preallocate(fd: int, size: int) -> None:
    if size:
        try:
            os.posix_fallocate(fd, 0, size)
        except (AttributeError, OSError):
            os.ftruncate(fd, size)

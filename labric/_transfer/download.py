"""Downloads: one file to one path, verified before it appears under its name.

Bytes go to ``<dest>.part`` (see :mod:`labric._transfer.naming`) and are renamed to ``dest``
only after the CRC32C matched and the file was fsynced: a partial file never appears under the
final name. Large objects are fetched as concurrent ranges pinned to one ETag with ``If-Match``
into a preallocated ``.part``; a changed object (412) restarts the download from scratch instead
of mixing versions. An interrupted ranged download keeps its ``.part`` and journal and resumes;
any other failure removes the ``.part``. Response bodies are written with ``pwritev`` in a
worker thread while the next batch is received, the CRC32C chained over them in order.

:meth:`Downloader.read_bytes` fetches a whole file into memory instead, verified the same way
and never reading past its stated size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labric._transfer.checksum import (
    crc32c_combine,
    crc32c_extend,
    crc32c_from_b64,
    crc32c_to_b64,
)
from labric._transfer.context import TransferContext, _fpath, _goog_crc, _json_object, _model
from labric._transfer.journal import journal_key
from labric._transfer.naming import destination_path, temporary_path
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import _gather_all, plan_parts
from labric._transfer.sources import _file_crc
from labric.errors import APIStatusError, IntegrityError, TransferError
from labric.models.files import FileContent
from labric.models.transfers import TransferPhase

__all__ = ["Downloader"]

_PAGE_RENDERABLE = ("text/html", "application/xhtml+xml", "image/svg+xml")


class _ObjectChanged(Exception):
    """The object changed on the server mid-download (its ETag no longer matches)."""


class Downloader:
    """A client's downloads, one file per call (calls run concurrently).

    Args:
        context: The engine's shared transport, settings and state.
    """

    def __init__(self, context: TransferContext) -> None:
        self._ctx = context

    async def _original_path(self, file_id: str) -> str | None:
        """The file's platform path (``GET /v1/files/{id}``), or ``None`` where not served."""
        try:
            response = await self._ctx.api("GET", _fpath(file_id))
        except APIStatusError as exc:
            if exc.status_code in (404, 405):
                return None  # the content request that follows reports a missing file
            raise
        value = _json_object(response).get("original_path")
        return value if isinstance(value, str) and value else None

    async def content(self, file_id: str) -> FileContent:
        return _model(await self._ctx.api("GET", _fpath(file_id, "/content")), FileContent)

    async def download(
        self,
        file_id: str,
        dest: Path,
        *,
        overwrite: bool,
        progress: _Progress,
        skip_existing: bool = False,
        claimed: set[Path] | None = None,
    ) -> tuple[Path, bool]:
        """Download one file to ``dest`` (a file path, or a directory to put it in).

        With ``claimed`` (bulk downloads), ``dest`` is a directory and the file keeps its platform
        path under it; the final path is claimed in that set before any byte is written, so two
        files that map to one path never write over each other.

        Returns the final path and whether an identical file was already there.
        """
        original_path = await self._original_path(file_id) if claimed is not None else None
        info = await self.content(file_id)
        final = destination_path(
            dest,
            file_id=file_id,
            file_name=info.file_name,
            original_path=original_path,
            claimed=claimed,
        )
        total = info.size_bytes
        progress.started_file(file_id, total)
        if final.exists():
            if skip_existing and info.crc32c_hash is not None:
                local = await asyncio.to_thread(_file_crc, final)
                if local == crc32c_from_b64(info.crc32c_hash):
                    progress.total_done += total or 0
                    progress.finished_file(TransferPhase.SKIPPED, file_id, total or 0, total)
                    return final, True
            if not overwrite:
                raise FileExistsError(f"{final} already exists; pass overwrite=True to replace it")
        final.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                await self._download_to(info, final, progress)
                break
            except _ObjectChanged:
                if attempt == 2:
                    raise IntegrityError(
                        f"File {file_id} kept changing on the server during the download"
                    ) from None
                info = await self.content(file_id)
        progress.finished_file(TransferPhase.COMPLETED, file_id, total or 0, total)
        return final, False

    async def _download_to(self, info: FileContent, final: Path, progress: _Progress) -> None:
        part_path = temporary_path(final)
        size = info.size_bytes
        expected = crc32c_from_b64(info.crc32c_hash) if info.crc32c_hash else None
        key = journal_key(self._ctx.origin, self._ctx.key_prefix, info.file_id, final.resolve())
        ranged = size is not None and size >= self._ctx.config.multipart_threshold
        keep_partial = False
        try:
            if ranged:
                assert size is not None
                keep_partial = True
                crc, stored = await self._download_ranges(info, size, part_path, key, progress)
                if any(c != crc for c in stored):
                    keep_partial = False
                    raise IntegrityError(
                        f"Download of {info.file_id} does not match the storage checksum"
                    )
            else:
                crc, size = await self._download_stream(info, part_path, progress)
            if expected is not None and crc != expected:
                keep_partial = False
                raise IntegrityError(
                    f"Download of {info.file_id} does not match its CRC32C "
                    f"({crc32c_to_b64(crc)} received, {info.crc32c_hash} expected)"
                )
            await asyncio.to_thread(_finalize, part_path, final)
            if ranged:
                await self._ctx.journal.delete("download", key)
        except _ObjectChanged:
            await self._discard(part_path, key)
            raise
        except asyncio.CancelledError:
            if not keep_partial:
                await asyncio.shield(self._discard(part_path, key))
            raise
        except BaseException:
            if not keep_partial:
                await self._discard(part_path, key)
            raise

    async def _discard(self, part_path: Path, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, part_path)
        await self._ctx.journal.delete("download", key)

    async def _download_stream(
        self, info: FileContent, part_path: Path, progress: _Progress
    ) -> tuple[int, int]:
        chunk = self._ctx.config.chunk_size
        done = [0]

        async def once() -> tuple[int, int]:
            progress.total_done -= done[0]
            done[0] = 0

            async def fetch() -> tuple[int, int]:
                fd = await asyncio.to_thread(
                    os.open, part_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644
                )
                try:

                    def moved(n: int) -> None:
                        done[0] += n
                        progress.advance(info.file_id, n, done[0], info.size_bytes)

                    async with (
                        self._ctx.memory.reserve(2 * chunk),
                        self._ctx.transport.stream("GET", info.download_url) as resp,
                    ):
                        crc, _ = await self._receive(resp, fd, 0, moved)
                        header_crc = _goog_crc(resp.headers.get("x-goog-hash"))
                        if header_crc is not None and header_crc != crc:
                            raise IntegrityError(
                                f"Download of {info.file_id} does not match the storage checksum"
                            )
                    if info.size_bytes is not None and done[0] != info.size_bytes:
                        raise TransferError(
                            f"Download of {info.file_id} ended at {done[0]} of "
                            f"{info.size_bytes} bytes"
                        )
                    return crc, done[0]
                finally:
                    await asyncio.to_thread(os.close, fd)

            return await self._ctx.slot_call(fetch)

        return await self._ctx.retrying(once, method="GET", url=info.download_url)

    async def _download_ranges(
        self, info: FileContent, size: int, part_path: Path, key: str, progress: _Progress
    ) -> tuple[int, set[int]]:
        """Fetch ``size`` bytes as concurrent ranges into ``part_path`` (resuming from the
        journal); return their CRC32C and the whole-object CRC32Cs storage stated alongside
        (``x-goog-hash`` describes the whole object even on a 206)."""
        part_size = self._ctx.config.part_size
        ranges = plan_parts(size, part_size)
        entry = await self._ctx.journal.get("download", key)
        etag: str | None = None
        crcs: dict[int, int] = {}
        if (
            entry is not None
            and entry.get("size") == size
            and entry.get("part_size") == part_size
            and part_path.exists()
        ):
            etag = entry.get("etag")
            crcs = {int(k): crc32c_from_b64(v) for k, v in entry.get("ranges", {}).items()}
        else:
            await asyncio.to_thread(_preallocate, part_path, size)
            crcs = {}
        already = sum(ranges[i][1] for i in crcs)
        progress.advance(info.file_id, already, already, size)
        done = [already]
        stored: set[int] = set()
        fd = await asyncio.to_thread(os.open, part_path, os.O_WRONLY)
        try:

            async def fetch_range(index: int) -> str | None:
                nonlocal etag
                offset, length = ranges[index]
                headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
                if etag is not None:
                    headers["If-Match"] = etag
                got = [0]

                async def once() -> str | None:
                    progress.total_done -= got[0]
                    got[0] = 0

                    async def fetch() -> str | None:
                        def moved(n: int) -> None:
                            got[0] += n
                            progress.advance(info.file_id, n, done[0] + got[0], size)

                        async with (
                            self._ctx.memory.reserve(2 * self._ctx.config.chunk_size),
                            self._ctx.transport.stream(
                                "GET", info.download_url, headers=headers
                            ) as resp,
                        ):
                            if resp.status != 206:
                                raise TransferError("The storage server ignored a Range request")
                            tag = resp.headers.get("ETag")
                            stated = _goog_crc(resp.headers.get("x-goog-hash"))
                            crc, received = await self._receive(resp, fd, offset, moved)
                        if received != length:
                            raise TransferError(
                                f"Range {offset}-{offset + length - 1} of {info.file_id} "
                                f"returned {received} bytes"
                            )
                        crcs[index] = crc
                        if stated is not None:
                            stored.add(stated)
                        return tag

                    try:
                        return await self._ctx.slot_call(fetch)
                    except APIStatusError as exc:
                        if exc.status_code == 412:
                            raise _ObjectChanged from exc
                        raise

                tag = await self._ctx.retrying(once, method="GET", url=info.download_url)
                if etag is not None and tag is not None and tag != etag:
                    raise _ObjectChanged
                done[0] += length
                await self._ctx.journal.put(
                    "download",
                    key,
                    {
                        "file_id": info.file_id,
                        "size": size,
                        "part_size": part_size,
                        "etag": etag,
                        "ranges": {str(i): crc32c_to_b64(c) for i, c in crcs.items()},
                    },
                )
                return tag

            todo = [i for i in range(len(ranges)) if i not in crcs]
            if todo and etag is None:
                # The first range pins the object version every other range must match.
                etag = await fetch_range(todo.pop(0))
            await _gather_all([fetch_range(i) for i in todo])
        finally:
            await asyncio.to_thread(os.close, fd)
        whole = 0
        for index, (_offset, length) in enumerate(ranges):
            whole = crc32c_combine(whole, crcs[index], length)
        return whole, stored

    async def _receive(
        self, resp: Any, fd: int, offset: int, moved: Callable[[int], None]
    ) -> tuple[int, int]:
        """Stream a response body into ``fd`` at ``offset``; return its CRC32C and length.

        Pieces are gathered (never concatenated) into batches of ``chunk_size`` and written with
        ``pwritev`` in a worker thread while the next batch is being received: one write in
        flight at a time, so the CRC chains in order and memory stays at two batches.
        """
        loop = asyncio.get_running_loop()
        chunk = self._ctx.config.chunk_size
        crc = 0
        total = 0
        writing: asyncio.Future[int] | None = None
        pieces: list[bytes] = []
        batched = 0
        try:
            async for piece in resp.content.iter_any():
                pieces.append(piece)
                batched += len(piece)
                if batched >= chunk:
                    if writing is not None:
                        crc = await writing
                    writing = loop.run_in_executor(
                        None, _pwritev_crc, fd, pieces, offset + total, crc
                    )
                    total += batched
                    moved(batched)
                    pieces, batched = [], 0
            if writing is not None:
                crc = await writing
                writing = None
            if pieces:
                crc = await loop.run_in_executor(
                    None, _pwritev_crc, fd, pieces, offset + total, crc
                )
                total += batched
                moved(batched)
        finally:
            if writing is not None and not writing.done():
                # Never close the file under a write still running in the worker thread.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(writing)
        return crc, total

    async def read_bytes(self, file_id: str) -> bytes:
        """Fetch a whole file into memory, verified against its CRC32C."""
        info = await self.content(file_id)

        size = info.size_bytes

        async def once() -> tuple[bytes, int | None]:
            async def fetch() -> tuple[bytes, int | None]:
                async with self._ctx.transport.stream("GET", info.download_url) as resp:
                    data = bytearray()
                    async for piece in resp.content.iter_any():
                        data += piece
                        if size is not None and len(data) > size:
                            # Stop reading: a storage server that keeps sending would fill memory.
                            raise TransferError(
                                f"File {file_id} is longer than its stated {size} bytes"
                            )
                    return bytes(data), _goog_crc(resp.headers.get("x-goog-hash"))

            return await self._ctx.slot_call(fetch)

        data, stored = await self._ctx.retrying(once, method="GET", url=info.download_url)
        if size is not None and len(data) != size:
            raise TransferError(f"File {file_id} ended at {len(data)} of {size} bytes")
        crc = crc32c_extend(0, data)
        if info.crc32c_hash is not None and crc != crc32c_from_b64(info.crc32c_hash):
            raise IntegrityError(f"File {file_id} does not match its CRC32C")
        if stored is not None and crc != stored:
            raise IntegrityError(f"File {file_id} does not match the storage checksum")
        return data


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


def _preallocate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except (AttributeError, OSError):
                os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _finalize(part_path: Path, final: Path) -> None:
    fd = os.open(part_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(part_path, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

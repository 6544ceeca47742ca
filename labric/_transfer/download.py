"""Downloads: one file to one path, verified before it appears under its name.

Bytes go to a temporary file created exclusively under a random name next to the final path
(see :mod:`labric._transfer.naming`; the journal records the name, so a rerun finds it again) and
are moved to the final name only after they were verified and fsynced: a partial file never
appears under the final name, and no existing file is ever written to. Without ``overwrite`` the
move is a hard link that fails when the final name appeared meanwhile, never a replacement.

Sizes are claims, checked before they cost anything: a body is read only up to the declared size
(one byte more fails the file at once), a short one fails at its end, and disk is preallocated
only for a size the storage server confirmed (the total of a ``206``'s ``Content-Range``).

Large objects are fetched as concurrent ranges pinned to one ETag with ``If-Match`` (an object
without an ETag is fetched as one stream instead); every ``206`` must carry exactly the range
asked for, or nothing of it is written. A changed object (412) restarts the download from scratch
instead of mixing versions. A ranged download interrupted by the network or by cancellation
keeps its temporary file and journal and resumes; any other failure removes the temporary file.
Response bodies are written with ``pwritev`` in a worker thread while the next batch is received,
the CRC32C chained over them in order.

Verification: the CRC32C of ``GET /v1/files/{id}/content``, else of the file's metadata, else the
storage server's ``x-goog-hash`` (a whole-object stream is checked against it in any case). When
none is given the size is still checked and the download is reported unverified
(:attr:`Downloaded.unverified`, a warning, a log record) instead of claiming a verification it
did not do.

:meth:`Downloader.read_bytes` fetches a whole file into memory instead, verified the same way,
never reading past its stated size nor past a bound (``max_bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from labric._transfer.checksum import (
    crc32c_combine,
    crc32c_extend,
    crc32c_from_b64,
    crc32c_to_b64,
)
from labric._transfer.context import TransferContext, _fpath, _goog_crc, _json_object, _model
from labric._transfer.journal import journal_key
from labric._transfer.naming import (
    TEMP_SUFFIX,
    destination_path,
    open_parent,
    temporary_name,
)
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import _gather_all
from labric.errors import APIError, APIStatusError, IntegrityError, TransferError
from labric.models.files import FileContent
from labric.models.transfers import TransferPhase

__all__ = ["DEFAULT_READ_LIMIT", "Downloaded", "Downloader"]

logger = logging.getLogger("labric")

T = TypeVar("T")

_PAGE_RENDERABLE = ("text/html", "application/xhtml+xml", "image/svg+xml")

#: The most bytes :meth:`Downloader.read_bytes` holds in memory unless told otherwise.
DEFAULT_READ_LIMIT = 256 * 1024 * 1024

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$")

_RENAME_NOREPLACE = 1
_renameat2: Any = None
if sys.platform == "linux":
    _renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if _renameat2 is not None:
        _renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        _renameat2.restype = ctypes.c_int

_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}
)


class _ObjectChanged(Exception):
    """The object changed on the server mid-download (its ETag no longer matches)."""


class _NoETag(Exception):
    """The storage server gave no ETag, so ranges could not be pinned to one version."""


@attrs.frozen(kw_only=True)
class Downloaded:
    """Where one download landed, and how far its bytes could be trusted.

    Attributes:
        path: The final path.
        skipped: An identical file was already there (``skip_existing``).
        unverified: Nothing gave a checksum: only the size could be checked.
        warnings: What a caller should know about a download that still succeeded.
    """

    path: Path
    skipped: bool = False
    unverified: bool = False
    warnings: tuple[str, ...] = ()


@attrs.define
class _Temp:
    """A temporary file this download created (or resumed) in the final directory."""

    dir_fd: int
    name: str
    fd: int
    key: str
    journalled: bool
    entry: dict[str, Any]


class Downloader:
    """A client's downloads, one file per call (calls run concurrently).

    Args:
        context: The engine's shared transport, settings and state.
    """

    def __init__(self, context: TransferContext) -> None:
        self._ctx = context

    async def _metadata(self, file_id: str) -> dict[str, Any]:
        """The file's metadata (``GET /v1/files/{id}``), or ``{}`` where not served."""
        try:
            response = await self._ctx.api("GET", _fpath(file_id))
        except APIStatusError as exc:
            if exc.status_code in (404, 405):
                return {}  # the content request that follows reports a missing file
            raise
        return _json_object(response)

    async def content(self, file_id: str) -> FileContent:
        return _model(await self._ctx.api("GET", _fpath(file_id, "/content")), FileContent)

    async def _expected_crc(self, info: FileContent, meta: dict[str, Any] | None) -> int | None:
        """The CRC32C the bytes must have: from ``content``, else from the metadata (``meta``, or
        fetched when not given)."""
        text = info.crc32c_hash
        if text is None:
            if meta is None:
                meta = await self._metadata(info.file_id)
            value = meta.get("crc32c_hash")
            text = value if isinstance(value, str) and value else None
        if text is None:
            return None
        try:
            return crc32c_from_b64(text)
        except ValueError:
            raise IntegrityError(
                f"File {info.file_id} has a malformed CRC32C {text!r}; its bytes cannot be checked"
            ) from None

    async def download(
        self,
        file_id: str,
        dest: Path,
        *,
        overwrite: bool,
        progress: _Progress,
        skip_existing: bool = False,
        claimed: set[Path] | None = None,
    ) -> Downloaded:
        """Download one file to ``dest`` (a file path, or a directory to put it in).

        With ``claimed`` (bulk downloads), ``dest`` is a directory and the file keeps its platform
        path under it; the final path is claimed in that set before any byte is written, so two
        files that map to one path never write over each other.
        """
        meta = await self._metadata(file_id) if claimed is not None else None
        original = meta.get("original_path") if meta is not None else None
        info = await self.content(file_id)
        final, root, parts = destination_path(
            dest,
            file_id=file_id,
            file_name=info.file_name,
            original_path=original if isinstance(original, str) and original else None,
            claimed=claimed,
        )
        expected = await self._expected_crc(info, meta)
        total = info.size_bytes
        progress.started_file(file_id, total)
        # Opened on the loop, not in a thread: a cancellation must never lose the descriptor.
        dir_fd = open_parent(root, parts, file_id=file_id)
        try:
            name = parts[-1]
            if _lexists(dir_fd, name):
                if skip_existing and expected is not None:
                    local = await _to_thread_to_end(_crc_at, dir_fd, name)
                    if local == expected:
                        # A run killed just as this file was moved into place may have left
                        # its temporary file behind.
                        await self._forget(self._key(file_id, final), dir_fd)
                        progress.total_done += total or 0
                        progress.finished_file(TransferPhase.SKIPPED, file_id, total or 0, total)
                        return Downloaded(path=final, skipped=True)
                if not overwrite:
                    raise FileExistsError(
                        f"{final} already exists; pass overwrite=True to replace it"
                    )
            for attempt in range(3):
                try:
                    verified = await self._download_to(
                        info, expected, final, dir_fd, name, overwrite, progress
                    )
                    break
                except _ObjectChanged:
                    if attempt == 2:
                        raise IntegrityError(
                            f"File {file_id} kept changing on the server during the download"
                        ) from None
                    info = await self.content(file_id)
                    # A new version: its checksum, asked for afresh (never the old metadata's).
                    expected = await self._expected_crc(info, None)
        finally:
            os.close(dir_fd)
        progress.finished_file(TransferPhase.COMPLETED, file_id, total or 0, total)
        if verified:
            return Downloaded(path=final)
        warning = (
            f"File {file_id} was downloaded to {final} unverified: neither the API nor storage "
            "gave a checksum, so only its size was checked"
        )
        logger.warning("%s", warning)
        return Downloaded(path=final, unverified=True, warnings=(warning,))

    async def _download_to(
        self,
        info: FileContent,
        expected: int | None,
        final: Path,
        dir_fd: int,
        name: str,
        overwrite: bool,
        progress: _Progress,
    ) -> bool:
        """Download into a temporary file and move it to ``name``; whether it was verified."""
        size = info.size_bytes
        key = self._key(info.file_id, final)
        ranged = size is not None and size >= self._ctx.config.multipart_threshold
        temp = await self._open_temporary(info, key, dir_fd, name, ranged)
        keep = False
        try:
            storage_crc: int | None = None
            if ranged:
                assert size is not None
                try:
                    # Storage states the whole object's x-goog-hash on a 206 too: when it
                    # disagrees with the bytes, the object is not the one the API recorded.
                    crc, storage_crc = await self._download_ranges(info, size, temp, progress)
                except _NoETag:
                    # Unpinned ranges could mix two versions of the object: one stream instead.
                    await _to_thread_to_end(os.ftruncate, temp.fd, 0)
                    temp.entry.update(etag=None, ranges={})
                    crc, storage_crc = await self._download_stream(info, temp.fd, progress)
            else:
                crc, storage_crc = await self._download_stream(info, temp.fd, progress)
            if expected is not None and crc != expected:
                raise IntegrityError(
                    f"Download of {info.file_id} does not match its CRC32C "
                    f"({crc32c_to_b64(crc)} received, {crc32c_to_b64(expected)} expected)"
                )
            if storage_crc is not None and crc != storage_crc:
                raise IntegrityError(
                    f"Download of {info.file_id} does not match the storage checksum "
                    f"({crc32c_to_b64(crc)} received, {crc32c_to_b64(storage_crc)} expected)"
                )
            await _to_thread_to_end(_finalize, temp, final, name, overwrite)
            if temp.journalled:
                await self._ctx.journal.delete("download", key)
            return expected is not None or storage_crc is not None
        except (asyncio.CancelledError, APIError):
            # The network or the caller stopped it: ranges pinned to an ETag are worth keeping.
            keep = ranged and temp.journalled and bool(temp.entry.get("etag"))
            raise
        finally:
            # No await before the removal: a second cancellation cannot skip it.
            await self._release(temp, keep=keep)

    def _key(self, file_id: str, final: Path) -> str:
        """The journal key of a download of ``file_id`` to ``final``."""
        return journal_key(self._ctx.origin, self._ctx.key_prefix, file_id, os.path.abspath(final))

    async def _forget(self, key: str, dir_fd: int) -> None:
        """Remove a journalled temporary file no one holds, and its journal entry."""
        entry = await self._ctx.journal.get("download", key)
        if entry is None:
            return
        old = entry.get("temp")
        if isinstance(old, str) and _is_temp_name(old):
            found = _claim_temp(dir_fd, old)
            if found is _BUSY:
                return
            if isinstance(found, int):
                _drop_temp(dir_fd, old, found)
        await self._ctx.journal.delete("download", key)

    async def _open_temporary(
        self, info: FileContent, key: str, dir_fd: int, name: str, ranged: bool
    ) -> _Temp:
        """The temporary file to write: the journalled one when it can resume, else a new one.

        A journalled temporary file that cannot resume is removed (it is this SDK's: its random
        name was recorded before it was created). One that another download holds locked is left
        alone, and this download uses a new one it does not journal.
        """
        entry = await self._ctx.journal.get("download", key)
        journalled = True
        if entry is not None:
            old = entry.get("temp")
            if isinstance(old, str) and _is_temp_name(old):
                found = _claim_temp(dir_fd, old)
                if found is _BUSY:
                    journalled = False
                elif isinstance(found, int):
                    if (
                        ranged
                        and entry.get("size") == info.size_bytes
                        and entry.get("part_size") == self._ctx.config.part_size
                        and entry.get("etag")
                    ):
                        return _Temp(dir_fd, old, found, key, True, entry)
                    _drop_temp(dir_fd, old, found)
        while True:
            temp_name = temporary_name(name)
            fresh: dict[str, Any] = {
                "file_id": info.file_id,
                "temp": temp_name,
                "size": info.size_bytes,
                "part_size": self._ctx.config.part_size,
                "etag": None,
                "ranges": {},
            }
            if journalled:
                # Recorded (and on disk) before the file exists: a crash never leaves a
                # temporary file nothing knows about.
                await self._ctx.journal.put("download", key, fresh)
                await self._ctx.journal.flush()
            try:
                fd = _create_temp(dir_fd, temp_name)
            except FileExistsError:
                continue
            return _Temp(dir_fd, temp_name, fd, key, journalled, fresh)

    async def _release(self, temp: _Temp, *, keep: bool) -> None:
        """Close the temporary file; unless kept for resuming, remove it and its journal entry.

        Done on the loop (two system calls) and without suspending, so it completes even when
        the download is being cancelled, before the directory descriptor is closed.
        """
        _close_temp(temp, keep)
        if not keep and temp.journalled:
            await self._ctx.journal.delete("download", temp.key)

    async def _download_stream(
        self, info: FileContent, fd: int, progress: _Progress
    ) -> tuple[int, int | None]:
        """One ``GET`` of the whole object; its CRC32C and the storage's ``x-goog-hash``."""
        chunk = self._ctx.config.chunk_size
        size = info.size_bytes
        done = [0]

        async def once() -> tuple[int, int | None]:
            progress.total_done -= done[0]
            done[0] = 0

            async def fetch() -> tuple[int, int | None]:
                await _to_thread_to_end(os.ftruncate, fd, 0)  # a retry starts over

                def moved(n: int) -> None:
                    done[0] += n
                    progress.advance(info.file_id, n, done[0], size)

                async with (
                    self._ctx.memory.reserve(2 * chunk),
                    self._ctx.transport.stream("GET", info.download_url) as resp,
                ):
                    length = resp.content_length
                    if size is not None and length is not None and length > size:
                        raise _length_mismatch(info.file_id, length, size)
                    limit = size if size is not None else length
                    crc, _ = await self._receive(resp, fd, 0, moved, limit, info.file_id)
                    header_crc = _goog_crc(resp.headers.get("x-goog-hash"))
                if size is not None and done[0] != size:
                    raise TransferError(
                        f"Download of {info.file_id} ended at {done[0]} of {size} bytes"
                    )
                return crc, header_crc

            return await self._ctx.slot_call(fetch)

        return await self._ctx.retrying(once, method="GET", url=info.download_url)

    async def _download_ranges(
        self, info: FileContent, size: int, temp: _Temp, progress: _Progress
    ) -> tuple[int, int | None]:
        """Concurrent ranges pinned to one ETag; the whole CRC32C and the storage's."""
        part_size = self._ctx.config.part_size
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
                        self._ctx.memory.reserve(2 * self._ctx.config.chunk_size),
                        self._ctx.transport.stream(
                            "GET", info.download_url, headers=headers
                        ) as resp,
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
                        crc, received = await self._receive(
                            resp, fd, offset, moved, length, info.file_id
                        )
                    if received != length:
                        raise TransferError(
                            f"Range {offset}-{end} of {info.file_id} returned {received} bytes"
                        )
                    crcs[index] = crc

                try:
                    await self._ctx.slot_call(fetch)
                except APIStatusError as exc:
                    if exc.status_code == 412:
                        raise _ObjectChanged from exc
                    raise

            await self._ctx.retrying(once, method="GET", url=info.download_url)
            done[0] += length
            entry.update(
                etag=etag,
                goog=crc32c_to_b64(storage_crc) if storage_crc is not None else None,
                ranges={str(i): crc32c_to_b64(c) for i, c in crcs.items()},
            )
            if temp.journalled:
                await self._ctx.journal.put("download", temp.key, dict(entry))

        if etag is None and count:
            # The first range pins the object version every other range must match, and
            # confirms the size before anything else is planned or allocated.
            await fetch_range(0)
        await _gather_all([fetch_range(i) for i in range(count) if i not in crcs])
        whole = 0
        for index in range(count):
            whole = crc32c_combine(whole, crcs[index], span(index)[1])
        return whole, storage_crc

    async def _receive(
        self,
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
                if limit is not None and total + batched > limit:
                    raise TransferError(
                        f"Storage sent more than the {limit} bytes stated for {file_id}"
                    )
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

    async def read_bytes(self, file_id: str, *, max_bytes: int = DEFAULT_READ_LIMIT) -> bytes:
        """Fetch a whole file into memory, verified against its CRC32C, at most ``max_bytes``."""
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        info = await self.content(file_id)
        size = info.size_bytes
        if size is not None and size > max_bytes:
            raise TransferError(
                f"File {file_id} is {size} bytes, over the {max_bytes} read_bytes holds in "
                "memory; download it to a file, or pass a larger max_bytes"
            )
        expected = await self._expected_crc(info, None)

        async def once() -> tuple[bytes, int | None]:
            async def fetch() -> tuple[bytes, int | None]:
                async with self._ctx.transport.stream("GET", info.download_url) as resp:
                    length = resp.content_length
                    if length is not None and size is not None and length > size:
                        raise _length_mismatch(file_id, length, size)
                    if length is not None and length > max_bytes:
                        raise TransferError(
                            f"File {file_id} is {length} bytes, over the {max_bytes} read_bytes "
                            "holds in memory; download it to a file, or pass a larger max_bytes"
                        )
                    data = bytearray()
                    async for piece in resp.content.iter_any():
                        data += piece
                        # Stop reading: a storage server that keeps sending would fill memory.
                        if size is not None and len(data) > size:
                            raise TransferError(
                                f"File {file_id} is longer than its stated {size} bytes"
                            )
                        if len(data) > max_bytes:
                            raise TransferError(
                                f"File {file_id} passed the {max_bytes} bytes read_bytes holds "
                                "in memory; download it to a file, or pass a larger max_bytes"
                            )
                    return bytes(data), _goog_crc(resp.headers.get("x-goog-hash"))

            return await self._ctx.slot_call(fetch)

        data, storage_crc = await self._ctx.retrying(once, method="GET", url=info.download_url)
        if size is not None and len(data) != size:
            raise TransferError(f"File {file_id} ended at {len(data)} of {size} bytes")
        crc = crc32c_extend(0, data)
        if expected is not None and crc != expected:
            raise IntegrityError(f"File {file_id} does not match its CRC32C")
        if storage_crc is not None and crc != storage_crc:
            raise IntegrityError(f"File {file_id} does not match the storage checksum")
        if expected is None and storage_crc is None:
            logger.warning(
                "File %s was read unverified: neither the API nor storage gave a checksum, so "
                "only its size was checked",
                file_id,
            )
        return data


def _length_mismatch(file_id: str, length: int, size: int) -> TransferError:
    # Only a longer body is refused before reading: a shorter one fails where it ends.
    return TransferError(
        f"Storage announces {length} bytes for file {file_id}, longer than its stated {size} bytes"
    )


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


async def _to_thread_to_end(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a worker thread and wait for it to end, even when cancelled meanwhile.

    The thread uses descriptors that the caller closes when it unwinds: returning early on a
    cancellation would close them under it. The cancellation is raised once the thread ended.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


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


# -- temporary files (worker thread) ----------------------------------------------------------

_BUSY = object()  # another download holds the temporary file


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and "/" not in name


if sys.platform != "win32":
    import fcntl

    def _lock(fd: int) -> bool:
        """Lock a temporary file while a download writes it; False when another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

else:  # pragma: no cover - no flock on Windows

    def _lock(fd: int) -> bool:
        return True


def _create_temp(dir_fd: int, name: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    _lock(fd)
    return fd


def _claim_temp(dir_fd: int, name: str) -> int | object | None:
    """Open and lock a journalled temporary file: its fd, ``_BUSY``, or None when gone."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError:
        return None  # gone, or replaced by something that is not a file: not ours to touch
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    if not _lock(fd):
        os.close(fd)
        return _BUSY
    return fd


def _drop_temp(dir_fd: int, name: str, fd: int) -> None:
    """Remove a temporary file this SDK created, if the name still holds the open file."""
    try:
        here = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        mine = os.fstat(fd)
        if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _close_temp(temp: _Temp, keep: bool) -> None:
    if temp.fd < 0:
        return
    fd, temp.fd = temp.fd, -1
    if keep:
        os.close(fd)
    else:
        _drop_temp(temp.dir_fd, temp.name, fd)


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _crc_at(dir_fd: int, name: str) -> int | None:
    """The CRC32C of the regular file ``name`` (never through a symlink), or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        crc = 0
        while block := os.read(fd, 4 * 1024 * 1024):
            crc = crc32c_extend(crc, block)
        return crc
    finally:
        os.close(fd)


def _rename_noreplace(dir_fd: int, src: str, dst: str) -> bool:
    """``renameat2(RENAME_NOREPLACE)``: True when done, False where the system lacks it.

    Raises:
        FileExistsError: ``dst`` exists.
    """
    if _renameat2 is None:
        return False
    if _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), dst)
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False  # a kernel or file system without it
    raise OSError(err, os.strerror(err), dst)


def _finalize(temp: _Temp, final: Path, name: str, overwrite: bool) -> None:
    """Sync the temporary file and give it its final name (never replacing one unless told).

    Without ``overwrite`` the move must fail when the name exists (a file that appeared during
    the download, a symlink): ``renameat2(RENAME_NOREPLACE)`` where the system has it (atomic, no
    second name ever visible), else a hard link and an unlink, else (file systems without hard
    links) a check and a rename, which leaves a narrow race.
    """
    os.fsync(temp.fd)
    dir_fd = temp.dir_fd
    exists = f"{final} appeared during the download; pass overwrite=True to replace it"
    if overwrite:
        os.rename(temp.name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    else:
        try:
            if not _rename_noreplace(dir_fd, temp.name, name):
                _link_then_unlink(dir_fd, temp.name, name)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, exists, str(final)) from None
    fd, temp.fd = temp.fd, -1
    os.close(fd)
    os.fsync(dir_fd)


def _link_then_unlink(dir_fd: int, src: str, dst: str) -> None:
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if _lexists(dir_fd, dst):
            raise FileExistsError(errno.EEXIST, "exists", dst) from None
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    else:
        os.unlink(src, dir_fd=dir_fd)

"""The transfer engine: uploads and downloads of one file or twenty thousand, bounded and lossless.

Scheduling
    Every storage and API request a transfer makes takes a slot from one :class:`AdaptiveLimiter`
    (requests in flight, never above the connection pool) and every buffered byte is reserved from
    one :class:`MemoryBudget`. Small files and the parts of huge files share both, so memory stays
    under the budget whatever the mix. The limiter halves its limit when the server answers 429 or
    503 and grows back by one slot per run of successes (AIMD).

Uploads
    ``POST upload-url`` (with the size), then either one streamed ``PUT`` (the hosted flow) or,
    when the server offers parts, concurrent part ``PUT``s, each read with ``os.pread`` off the
    event loop, checksummed and sent with ``x-goog-hash``; then ``confirm-upload``. The whole
    file's CRC32C is computed while streaming (combined across parts, never a second read) and
    compared with what the server recorded. Path sources are journalled (see
    :mod:`labric._transfer.journal`): a rerun after a crash asks ``upload-status`` and sends only
    the missing parts, and an upload the server has confirmed is never sent again.

Downloads
    Bytes go to ``<dest>.part`` and are renamed to ``dest`` only after the CRC32C matched and the
    file was fsynced: a partial file never appears under the final name. Large objects are fetched
    as concurrent ranges pinned to one ETag with ``If-Match`` into a preallocated ``.part``; a
    changed object (412) restarts the download from scratch instead of mixing versions. An
    interrupted ranged download keeps its ``.part`` and journal and resumes; any other failure
    removes the ``.part``.

Failure
    Requests are retried by the transport's policy (with the same ``Idempotency-Key`` for API
    writes). Cancellation stops every worker promptly; nothing is renamed into place afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import io
import mimetypes
import os
import stat
import tempfile
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import attrs

from labric._core.config import TransferConfig
from labric._core.converter import structure
from labric._core.transport import Response, Transport, path_segment
from labric._transfer.checksum import (
    crc32c_combine,
    crc32c_extend,
    crc32c_from_b64,
    crc32c_to_b64,
)
from labric._transfer.journal import Journal, journal_key
from labric.errors import (
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    IntegrityError,
    TransferError,
)
from labric.models.files import (
    FileContent,
    FileInfo,
    FileUpload,
    UploadPart,
    UploadStatus,
    UploadURL,
)
from labric.models.transfers import (
    DownloadOutcome,
    TransferPhase,
    TransferProgress,
    UploadOutcome,
)

__all__ = [
    "AdaptiveLimiter",
    "MemoryBudget",
    "ProgressCallback",
    "TransferEngine",
    "UploadSourceType",
    "plan_parts",
    "safe_relative_path",
]

T = TypeVar("T")

#: What ``upload`` accepts: a path, bytes, a binary file object, or an async iterable of bytes.
UploadSourceType = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | AsyncIterable[bytes]
)
ProgressCallback = Callable[[TransferProgress], Any]

_THROTTLE_STATUSES = frozenset({429, 503})
_PAGE_RENDERABLE = ("text/html", "application/xhtml+xml", "image/svg+xml")
_PROGRESS_INTERVAL = 0.2


# -- planning ---------------------------------------------------------------------------------


def plan_parts(size: int, part_size: int) -> list[tuple[int, int]]:
    """Split ``[0, size)`` into ``(offset, length)`` ranges of ``part_size`` (the last shorter).

    The ranges cover ``[0, size)`` exactly, in order, with no gap or overlap; a zero-byte object
    has no ranges.
    """
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    if size < 0:
        raise ValueError("size must not be negative")
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)]


#: The longest path component, in bytes, that common file systems take (ext4, APFS, NTFS), less
#: the ``.part`` suffix a download is written under first.
_MAX_COMPONENT = 255 - len(".part")


def safe_relative_path(name: str) -> Path:
    """Turn a server-supplied file name into a relative path that stays inside its directory.

    Separators of either kind split components; empty and ``.`` components are dropped, a drive or
    root prefix is ignored.

    Raises:
        TransferError: the name has a ``..`` component, a NUL, a component too long for a file
            system, or nothing usable.
    """
    if "\x00" in name:
        raise TransferError(f"Refusing a file name with a NUL character: {name!r}")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive, "C:"
        parts = parts[1:]
    if any(p == ".." for p in parts):
        raise TransferError(f"Refusing a file name that leaves its directory: {name!r}")
    if not parts:
        raise TransferError(f"Refusing an empty file name: {name!r}")
    if any(len(p.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT for p in parts):
        # Caught here, the file fails with a reason; the OS would only say ENAMETOOLONG.
        raise TransferError(
            f"Refusing a file name with a part over {_MAX_COMPONENT} bytes: {name[:60]!r}..."
        )
    return Path(*parts)


# -- scheduling -------------------------------------------------------------------------------


class AdaptiveLimiter:
    """Bounds requests in flight; halves on throttling and grows back one slot at a time (AIMD).

    Args:
        limit: The most requests in flight (also the ceiling it grows back to).
        minimum: The floor it never shrinks below.
        increase_after: Successes needed to add one slot back.
    """

    def __init__(self, limit: int, *, minimum: int = 1, increase_after: int = 8) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.ceiling = limit
        self.minimum = min(minimum, limit)
        self.limit = limit
        self.in_flight = 0
        self.peak_in_flight = 0
        self.throttled = 0
        self._increase_after = increase_after
        self._successes = 0
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> None:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    async def release(self) -> None:
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            cond.notify(1)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        # Shielded so a cancelled request still gives its slot back.
        await asyncio.shield(self.release())

    def on_throttle(self) -> None:
        """The server pushed back (429/503): halve the limit."""
        self.throttled += 1
        self._successes = 0
        self.limit = max(self.minimum, self.limit // 2)

    async def on_success(self) -> None:
        """A request went through: after enough of them, allow one more in flight."""
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self._increase_after:
            self._successes = 0
            cond = self._condition()
            async with cond:
                self.limit += 1
                cond.notify(1)


class BufferPool:
    """Part buffers kept for reuse, up to ``limit`` bytes of idle buffers.

    Uploads read each part into a buffer of its size. Allocating and freeing a fresh part-sized
    ``bytes`` per part fragments the allocator's heap, so a long upload's resident memory creeps
    well past what is actually buffered; reusing buffers keeps it at what the budget allows.
    Parts of one upload share one size (the last may be shorter), so a pool keyed by size hits.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.idle = 0
        self._free: dict[int, list[bytearray]] = {}

    def take(self, size: int) -> bytearray:
        free = self._free.get(size)
        if free:
            self.idle -= size
            return free.pop()
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        size = len(buffer)
        if self.idle + size > self.limit:
            # Make room by dropping buffers of other sizes: they belong to finished uploads.
            for other in [n for n in self._free if n != size]:
                self.idle -= other * len(self._free.pop(other))
        if self.idle + size <= self.limit:
            self._free.setdefault(size, []).append(buffer)
            self.idle += size


class MemoryBudget:
    """Bounds bytes buffered at once across all transfers of a client.

    A reservation larger than the whole budget is capped at the budget, so it waits for everything
    else to drain instead of deadlocking.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.peak = 0
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        amount = min(max(nbytes, 0), self.budget)
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.used + amount <= self.budget)
            self.used += amount
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            await asyncio.shield(self._release(amount))

    async def _release(self, amount: int) -> None:
        cond = self._condition()
        async with cond:
            self.used -= amount
            cond.notify_all()


# -- progress ---------------------------------------------------------------------------------


class _Progress:
    """Aggregates per-file progress into events for one call; rate-limits ``progress`` events."""

    def __init__(
        self,
        direction: str,
        callback: ProgressCallback | None,
        files_total: int,
        total_bytes: int | None = None,
    ) -> None:
        self.direction = direction
        self.callback = callback
        self.files_total = files_total
        self.total_bytes = total_bytes
        self.total_done = 0
        self.files_done = 0
        self.started = time.monotonic()
        self._last: dict[str, float] = {}

    def _emit(self, phase: TransferPhase, file: str, done: int, total: int | None) -> None:
        if self.callback is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.callback(
            TransferProgress(
                direction=self.direction,
                phase=phase,
                file=file,
                bytes_done=done,
                bytes_total=total,
                total_bytes_done=self.total_done,
                total_bytes=self.total_bytes,
                files_done=self.files_done,
                files_total=self.files_total,
                rate=self.total_done / elapsed,
            )
        )

    def started_file(self, file: str, total: int | None) -> None:
        self._emit(TransferPhase.STARTED, file, 0, total)

    def advance(self, file: str, delta: int, done: int, total: int | None) -> None:
        self.total_done += delta
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._last.get(file, 0.0) >= _PROGRESS_INTERVAL:
            self._last[file] = now
            self._emit(TransferPhase.PROGRESS, file, done, total)

    def finished_file(self, phase: TransferPhase, file: str, done: int, total: int | None) -> None:
        self.files_done += 1
        self._last.pop(file, None)
        self._emit(phase, file, done, total)


# -- upload sources ---------------------------------------------------------------------------


@attrs.define
class _Source:
    """One upload source, measured, readable by range and restartable for retries."""

    name: str
    size: int
    content_type: str
    path: Path | None = None
    data: bytes | memoryview | None = None
    fileobj: IO[bytes] | None = None
    base_offset: int = 0
    identity: tuple[str, int, int] | None = None
    spooled: bool = False

    async def read_part(
        self, offset: int, length: int, buffer: bytearray | None
    ) -> tuple[memoryview, int]:
        """Read ``length`` bytes at ``offset`` and their CRC32C, off the event loop.

        File sources are read into ``buffer`` (a reused part buffer of ``length`` bytes, so
        part-sized allocations do not pile up in the heap); in-memory sources are sliced without
        a copy and need no buffer.
        """
        if self.data is not None:
            view = memoryview(self.data).cast("B")[offset : offset + length]
            return view, crc32c_extend(0, view)
        assert buffer is not None
        assert len(buffer) == length
        if self.path is not None:
            return await asyncio.to_thread(_pread_into, self.path, offset, buffer)
        assert self.fileobj is not None
        return await asyncio.to_thread(
            _readinto_fileobj, self.fileobj, self.base_offset + offset, buffer
        )

    async def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return bytes(self.data[offset : offset + length])
        if self.path is not None:
            return await asyncio.to_thread(_pread_path, self.path, offset, length)
        assert self.fileobj is not None
        return await asyncio.to_thread(
            _read_fileobj, self.fileobj, self.base_offset + offset, length
        )

    def close(self) -> None:
        if self.spooled and self.fileobj is not None:
            self.fileobj.close()


#: Files up to this size are read when they are measured, in the same worker-thread hop: for
#: thousands of small files the hops, not the bytes, are the cost.
SMALL_FILE = 256 * 1024


def _measure_path(path: Path) -> tuple[str, os.stat_result, bytes | None]:
    """Resolve, stat and (when small) read a file, in one trip to a worker thread.

    The bytes of a small file are read from the descriptor that was measured, so they belong to
    the size and mtime recorded as its identity.
    """
    # Non-blocking, so a FIFO is refused at once instead of waiting for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"Not a regular file: {path}")
        head = _pread_all(fd, 0, st.st_size) if st.st_size <= SMALL_FILE else None
    finally:
        os.close(fd)
    return str(path.resolve()), st, head


def _pread_path(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _pread_all(fd, offset, length)
    finally:
        os.close(fd)


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    chunks = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            raise TransferError("The file got shorter while it was being uploaded")
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def _pread_into(path: Path, offset: int, buffer: bytearray) -> tuple[memoryview, int]:
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = 0
        while got < len(view):
            n = os.preadv(fd, [view[got:]], offset + got)
            if n == 0:
                raise TransferError("The file got shorter while it was being uploaded")
            got += n
    finally:
        os.close(fd)
    return view, crc32c_extend(0, view)


def _readinto_fileobj(fileobj: IO[bytes], offset: int, buffer: bytearray) -> tuple[memoryview, int]:
    view = memoryview(buffer)
    fileobj.seek(offset)
    got = 0
    while got < len(view):
        n = fileobj.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise TransferError("The file object got shorter while it was being uploaded")
        got += n
    return view, crc32c_extend(0, view)


def _read_fileobj(fileobj: IO[bytes], offset: int, length: int) -> bytes:
    fileobj.seek(offset)
    data = fileobj.read(length)
    if len(data) != length:
        raise TransferError("The file object got shorter while it was being uploaded")
    return data


def guess_content_type(name: str, content_type: str | None) -> str:
    """Explicit type, else a guess from the name, else ``application/octet-stream``."""
    if content_type:
        return content_type
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


async def _spool(chunks: AsyncIterator[bytes], spool_dir: str | None) -> IO[bytes]:
    spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - owned by the _Source
    try:
        async for chunk in chunks:
            if chunk:
                await asyncio.to_thread(spool.write, chunk)
    except BaseException:
        spool.close()
        raise
    return spool


async def _iter_sync_file(fileobj: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    while True:
        chunk = await asyncio.to_thread(fileobj.read, chunk_size)
        if not chunk:
            return
        yield chunk


async def open_source(
    source: UploadSourceType,
    *,
    name: str | None,
    content_type: str | None,
    chunk_size: int,
) -> _Source:
    """Measure a source; non-seekable streams are spooled to a temporary file, not to memory.

    Raises:
        ValueError: bytes or a stream with no ``name``.
        FileNotFoundError / IsADirectoryError: a path that is not a readable file.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        resolved, st, head = await asyncio.to_thread(_measure_path, path)
        file_name = name or path.name
        return _Source(
            name=file_name,
            size=st.st_size,
            content_type=guess_content_type(file_name, content_type),
            path=path,
            data=head,
            identity=(resolved, st.st_size, st.st_mtime_ns),
        )
    if isinstance(source, bytes | bytearray | memoryview):
        if not name:
            raise ValueError("Uploading bytes needs a name: upload(data, name='run.csv')")
        data = bytes(source) if isinstance(source, bytearray) else source
        return _Source(
            name=name,
            size=len(data),
            content_type=guess_content_type(name, content_type),
            data=data,
        )
    if isinstance(source, io.TextIOBase):
        raise ValueError("Open the file in binary mode ('rb') to upload it")
    if hasattr(source, "read"):
        fileobj: IO[bytes] = source  # type: ignore[assignment]
        file_name = name or os.path.basename(str(getattr(fileobj, "name", "") or ""))
        if not file_name:
            raise ValueError("This file object has no name: pass upload(f, name='run.csv')")
        seekable = False
        with contextlib.suppress(AttributeError, OSError, ValueError):
            seekable = bool(fileobj.seekable())
        if seekable:
            start = fileobj.tell()
            end = fileobj.seek(0, os.SEEK_END)
            fileobj.seek(start)
            return _Source(
                name=file_name,
                size=end - start,
                content_type=guess_content_type(file_name, content_type),
                fileobj=fileobj,
                base_offset=start,
            )
        spool = await _spool(_iter_sync_file(fileobj, chunk_size), None)
        return _spooled(spool, file_name, content_type)
    if hasattr(source, "__aiter__"):
        if not name:
            raise ValueError("Uploading a stream needs a name: upload(stream, name='run.csv')")
        spool = await _spool(aiter(source), None)
        return _spooled(spool, name, content_type)
    raise TypeError(
        f"Cannot upload a {type(source).__name__}: pass a path, bytes, a binary file object "
        "or an async iterable of bytes"
    )


def _spooled(spool: IO[bytes], name: str, content_type: str | None) -> _Source:
    size = spool.seek(0, os.SEEK_END)
    spool.seek(0)
    return _Source(
        name=name,
        size=size,
        content_type=guess_content_type(name, content_type),
        fileobj=spool,
        spooled=True,
    )


def expand_sources(sources: Iterable[Any]) -> list[tuple[object, Any, str | None]]:
    """Expand directories and globs into files: ``(original source, upload source, name)``.

    Files under a directory keep their path relative to the directory's parent as their name
    (``run42/plate1.csv``); glob matches keep their path relative to the glob's fixed prefix.
    ``(name, data)`` tuples name bytes or streams.
    """
    out: list[tuple[object, Any, str | None]] = []
    for src in sources:
        if isinstance(src, tuple) and len(src) == 2 and isinstance(src[0], str):
            out.append((src, src[1], src[0]))
            continue
        if isinstance(src, str | os.PathLike):
            text = os.fspath(src)
            if glob.has_magic(text):
                root = _glob_root(text)
                for match in sorted(glob.glob(text, recursive=True)):
                    if os.path.isfile(match):
                        out.append(
                            (match, match, os.path.relpath(match, root).replace(os.sep, "/"))
                        )
                continue
            if os.path.isdir(text):
                base = Path(text).resolve()
                for dirpath, dirnames, filenames in os.walk(base):
                    dirnames.sort()
                    for filename in sorted(filenames):
                        full = Path(dirpath) / filename
                        rel = full.relative_to(base.parent).as_posix()
                        out.append((str(full), full, rel))
                continue
        out.append((src, src, None))
    return out


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = os.path.join(*fixed) if fixed else "."
    return root if os.path.isdir(root) else os.path.dirname(root) or "."


# -- the engine -------------------------------------------------------------------------------


class _ObjectChanged(Exception):
    """The object changed on the server mid-download (its ETag no longer matches)."""


class TransferEngine:
    """Runs uploads and downloads for one client.

    Args:
        transport: The client's transport.
        config: Transfer settings.
    """

    def __init__(self, transport: Transport, config: TransferConfig) -> None:
        self._transport = transport
        self._config = config
        limit = max(1, min(config.concurrency, transport.config.max_connections))
        self.limiter = AdaptiveLimiter(limit)
        self.memory = MemoryBudget(config.memory_budget)
        self.buffers = BufferPool(config.memory_budget)
        self.journal = Journal(config.state_dir)
        self._origin = transport.config.base_url
        self._key_prefix = transport.config.key_prefix

    def close(self) -> None:
        """Release the journal's thread and database."""
        self.journal.close()

    # -- request helpers ------------------------------------------------------------------

    async def _slot_call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one request under a limiter slot, noting throttling and success for AIMD."""
        async with self.limiter:
            try:
                result = await op()
            except APIStatusError as exc:
                if exc.status_code in _THROTTLE_STATUSES:
                    self.limiter.on_throttle()
                raise
        await self.limiter.on_success()
        return result

    @contextlib.asynccontextmanager
    async def _stall_guard(self, method: str, url: str) -> AsyncIterator[Callable[[], None]]:
        """Fail an upload whose body stops moving for the read timeout.

        aiohttp has no write timeout: a storage server that stops reading would hold the request
        forever. The body generator calls the yielded ``touch`` after each chunk it hands over,
        which pushes the deadline back; a stall turns into a (retryable) ``APITimeoutError``.
        """
        delay = self._transport.config.timeout.read
        if delay is None:
            yield lambda: None
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(delay) as deadline:
                yield lambda: deadline.reschedule(loop.time() + delay)
        except TimeoutError as exc:
            raise APITimeoutError(
                f"The transfer stalled for {delay:g} s", method=method, path=urlsplit(url).path
            ) from exc

    async def api(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Response:
        """An API request under the limiter, retried here (so throttling is seen per attempt)."""
        key = uuid.uuid4().hex if method in ("POST", "PATCH") else None

        async def once() -> Response:
            return await self._slot_call(
                lambda: self._transport.request(
                    method, path, json=json, params=params, max_retries=0, idempotency_key=key
                )
            )

        return await self._transport.retrying(once, method=method, url=self._transport.url(path))

    # -- uploads --------------------------------------------------------------------------

    async def upload(
        self,
        source: UploadSourceType,
        *,
        name: str | None,
        content_type: str | None,
        attribution: dict[str, str],
        progress: _Progress,
        resume: bool = True,
    ) -> tuple[FileUpload, bool]:
        """Upload one source; returns the confirmed file and whether it was already there."""
        src = await open_source(
            source, name=name, content_type=content_type, chunk_size=self._config.chunk_size
        )
        try:
            return await self._upload_source(src, attribution, progress, resume=resume)
        finally:
            src.close()

    async def _upload_source(
        self, src: _Source, attribution: dict[str, str], progress: _Progress, *, resume: bool
    ) -> tuple[FileUpload, bool]:
        progress.started_file(src.name, src.size)
        key = None
        if resume and src.identity is not None:
            key = journal_key(
                self._origin,
                self._key_prefix,
                src.name,
                attribution.get("instrument_id", ""),
                *src.identity,
            )
            resumed = await self._try_resume(key, src, progress)
            if resumed is not None:
                return resumed
        body: dict[str, Any] = {
            "file_name": src.name,
            "content_type": src.content_type,
            **attribution,
        }
        if src.size >= self._config.multipart_threshold:
            # The size lets the server offer parts: concurrent, checksummed, resumable.
            body["size_bytes"] = src.size
        ticket = _model(await self.api("POST", "/v1/files/upload-url", json=body), UploadURL)
        if ticket.parts:
            if key is not None:
                await self.journal.put("upload", key, {"file_id": ticket.file_id, "parts": {}})
            result = await self._upload_parts(src, ticket, {}, key, progress)
        else:
            if key is not None:
                await self.journal.put("upload", key, {"file_id": ticket.file_id, "parts": None})
            result = await self._upload_single(src, ticket, progress, key)
        if key is not None:
            await self.journal.put("upload", key, {"file_id": result.file_id, "confirmed": True})
        progress.finished_file(TransferPhase.COMPLETED, src.name, src.size, src.size)
        return result, False

    async def _confirmed_upload(self, file_id: str, src: _Source) -> FileUpload | None:
        """The file as the server has it, or ``None`` if it is gone."""
        try:
            info = _json_object(await self.api("GET", _fpath(file_id)))
        except APIStatusError as exc:
            if exc.status_code in (404, 410):
                return None
            raise
        return FileUpload(
            file_id=file_id,
            file_name=info.get("file_name") or src.name,
            size_kilobytes=info.get("size_kilobytes"),
            size_bytes=info.get("size_bytes"),
            crc32c_hash=info.get("crc32c_hash"),
        )

    def _skipped(self, src: _Source, progress: _Progress) -> None:
        progress.total_done += src.size
        progress.finished_file(TransferPhase.SKIPPED, src.name, src.size, src.size)

    async def _try_resume(
        self, key: str, src: _Source, progress: _Progress
    ) -> tuple[FileUpload, bool] | None:
        entry = await self.journal.get("upload", key)
        if entry is None:
            return None
        file_id = entry["file_id"]
        if entry.get("confirmed"):
            existing = await self._confirmed_upload(file_id, src)
            if existing is not None:
                self._skipped(src, progress)
                return existing, True
            await self.journal.delete("upload", key)
            return None
        try:
            status = _model(await self.api("GET", _fpath(file_id, "/upload-status")), UploadStatus)
        except APIStatusError as exc:
            if exc.status_code in (404, 410):
                await self.journal.delete("upload", key)
                return None
            raise
        if status.status == "confirmed":
            existing = await self._confirmed_upload(file_id, src)
            if existing is not None:
                await self.journal.put("upload", key, {"file_id": file_id, "confirmed": True})
                self._skipped(src, progress)
                return existing, True
            return None
        if entry.get("parts") is None:
            # A single PUT that may have landed before the crash: confirming tells.
            landed = await self._confirm_landed(file_id, src)
            if landed is None:
                return None  # nothing stored: start over with a fresh ticket
            await self.journal.put("upload", key, {"file_id": file_id, "confirmed": True})
            progress.total_done += src.size
            progress.finished_file(TransferPhase.COMPLETED, src.name, src.size, src.size)
            return landed, False
        # The status carries fresh URLs for the parts the server lacks; send only those.
        stored = {p.number: crc32c_from_b64(p.crc32c) for p in status.parts}
        plan = plan_parts(src.size, status.part_size or src.size or 1)
        if status.part_size is None or len(plan) != len(stored) + len(status.missing_parts):
            return None  # the file changed shape; start over
        ticket = UploadURL(
            file_id=file_id,
            upload_url="",
            expires_at="",
            part_size=status.part_size,
            parts=[
                UploadPart(number=n, offset=off, size=size, url="", headers={})
                for n, (off, size) in enumerate(plan, start=1)
                if n in stored
            ]
            + list(status.missing_parts),
        )
        done = stored
        result = await self._upload_parts(src, ticket, done, key, progress)
        await self.journal.put("upload", key, {"file_id": file_id, "confirmed": True})
        progress.finished_file(TransferPhase.COMPLETED, src.name, src.size, src.size)
        return result, False

    async def _upload_single(
        self, src: _Source, ticket: UploadURL, progress: _Progress, key: str | None
    ) -> FileUpload:
        chunk = self._config.chunk_size
        crc_holder = [0]
        sent = [0]

        async def body(touch: Callable[[], None]) -> AsyncIterator[bytes]:
            crc = 0
            for offset, length in plan_parts(src.size, chunk):
                data = await src.read(offset, length)
                crc = crc32c_extend(crc, data)
                sent[0] += len(data)
                progress.advance(src.name, len(data), sent[0], src.size)
                touch()
                yield data
            crc_holder[0] = crc

        async def put_once() -> int | None:
            progress.total_done -= sent[0]
            sent[0] = 0
            headers = {**ticket.headers, "Content-Length": str(src.size)}

            async def send() -> int | None:
                async with (
                    self.memory.reserve(min(chunk, src.size)),
                    self._stall_guard("PUT", ticket.upload_url) as touch,
                    self._transport.stream(
                        "PUT",
                        ticket.upload_url,
                        headers=headers,
                        data=body(touch) if src.size else b"",
                    ) as resp,
                ):
                    await resp.read()
                    return _goog_crc(resp.headers.get("x-goog-hash"))

            return await self._slot_call(send)

        try:
            server_crc = await self._transport.retrying(
                put_once, method="PUT", url=ticket.upload_url
            )
        except APIStatusError as exc:
            if exc.status_code != 412:
                raise
            # Create-only: an earlier attempt stored the object but its answer was lost.
            landed = await self._confirm_landed(ticket.file_id, src)
            if landed is None:
                raise
            return landed
        local = crc_holder[0]
        if server_crc is not None and server_crc != local:
            raise IntegrityError(
                f"Upload of {src.name!r} was corrupted in transit (CRC32C "
                f"{crc32c_to_b64(local)} sent, {crc32c_to_b64(server_crc)} stored)"
            )
        if key is not None:
            await self.journal.flush()  # the file id is on disk before the upload can finish
        response = await self.api("POST", _fpath(ticket.file_id, "/confirm-upload"))
        return self._check_confirm(response, src, local)

    async def _confirm_landed(self, file_id: str, src: _Source) -> FileUpload | None:
        """Confirm an upload whose bytes may be stored already; ``None`` when they are not.

        The source is read once more to check the stored CRC32C (this only happens when a PUT's
        answer was lost or a run was interrupted between PUT and confirm).
        """
        try:
            response = await self.api("POST", _fpath(file_id, "/confirm-upload"))
        except APIStatusError as exc:
            if exc.status_code in (400, 404, 409):
                return None
            raise
        crc = 0
        for offset, length in plan_parts(src.size, self._config.chunk_size):
            crc = crc32c_extend(crc, await src.read(offset, length))
        return self._check_confirm(response, src, crc)

    async def _upload_parts(
        self,
        src: _Source,
        ticket: UploadURL,
        done: dict[int, int],
        key: str | None,
        progress: _Progress,
    ) -> FileUpload:
        assert ticket.parts is not None
        parts = sorted(ticket.parts, key=lambda p: p.number)
        covered = sum(p.size for p in parts)
        if covered != src.size or plan_parts(src.size, ticket.part_size or src.size or 1) != [
            (p.offset, p.size) for p in parts
        ]:
            raise TransferError("The server's part plan does not cover the file exactly")
        crcs: dict[int, int] = dict(done)
        already = sum(p.size for p in parts if p.number in done)
        progress.advance(src.name, already, already, src.size)
        sent = [already]

        async def one(part: Any) -> None:
            # A part in flight holds its buffer, plus one slice copied into the socket's buffer.
            async with self.memory.reserve(part.size + min(part.size, self._config.chunk_size)):
                buffer = None if src.data is not None else self.buffers.take(part.size)
                try:
                    await send_part(part, buffer)
                finally:
                    if buffer is not None:
                        self.buffers.give(buffer)
            sent[0] += part.size
            progress.advance(src.name, part.size, sent[0], src.size)
            if key is not None:
                await self.journal.put(
                    "upload",
                    key,
                    {
                        "file_id": ticket.file_id,
                        "parts": {str(n): crc32c_to_b64(c) for n, c in crcs.items()},
                    },
                )

        async def send_part(part: Any, buffer: bytearray | None) -> None:
            data, crc = await src.read_part(part.offset, part.size, buffer)
            headers = {
                **part.headers,
                "Content-Length": str(part.size),
                "x-goog-hash": f"crc32c={crc32c_to_b64(crc)}",
            }

            async def put_once() -> None:
                async def send() -> None:
                    async with (
                        self._stall_guard("PUT", part.url) as touch,
                        self._transport.stream(
                            "PUT",
                            part.url,
                            headers=headers,
                            data=_slices(data, self._config.chunk_size, touch),
                        ) as resp,
                    ):
                        await resp.read()

                await self._slot_call(send)

            await self._transport.retrying(put_once, method="PUT", url=part.url)
            crcs[part.number] = crc

        todo = [p for p in parts if p.number not in done]
        await _gather_all([one(p) for p in todo])
        whole = 0
        for part in parts:
            whole = crc32c_combine(whole, crcs[part.number], part.size)
        manifest = {
            "parts": [{"number": p.number, "crc32c": crc32c_to_b64(crcs[p.number])} for p in parts]
        }
        if key is not None:
            await self.journal.flush()
        response = await self.api("POST", _fpath(ticket.file_id, "/confirm-upload"), json=manifest)
        return self._check_confirm(response, src, whole)

    def _check_confirm(self, response: Response, src: _Source, local_crc: int) -> FileUpload:
        upload = _model(response, FileUpload)
        if upload.crc32c_hash is not None and crc32c_from_b64(upload.crc32c_hash) != local_crc:
            raise IntegrityError(
                f"The server stored {src.name!r} with CRC32C {upload.crc32c_hash}, "
                f"but {crc32c_to_b64(local_crc)} was sent"
            )
        return upload

    # -- downloads ------------------------------------------------------------------------

    async def _original_path(self, file_id: str) -> str | None:
        """The file's platform path (``GET /v1/files/{id}``), or ``None`` where not served."""
        try:
            response = await self.api("GET", _fpath(file_id))
        except APIStatusError as exc:
            if exc.status_code in (404, 405):
                return None  # the content request that follows reports a missing file
            raise
        value = _json_object(response).get("original_path")
        return value if isinstance(value, str) and value else None

    async def content(self, file_id: str) -> FileContent:
        return _model(await self.api("GET", _fpath(file_id, "/content")), FileContent)

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
        final = dest
        if claimed is not None:
            final = dest / safe_relative_path(original_path or info.file_name or file_id)
            if final in claimed:
                raise TransferError(f"Another file in this download also maps to {final}")
            claimed.add(final)
        elif dest.is_dir():
            final = dest / safe_relative_path(info.file_name or file_id).name
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
        part_path = final.with_name(final.name + ".part")
        size = info.size_bytes
        expected = crc32c_from_b64(info.crc32c_hash) if info.crc32c_hash else None
        key = journal_key(self._origin, self._key_prefix, info.file_id, final.resolve())
        ranged = size is not None and size >= self._config.multipart_threshold
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
                await self.journal.delete("download", key)
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
        await self.journal.delete("download", key)

    async def _download_stream(
        self, info: FileContent, part_path: Path, progress: _Progress
    ) -> tuple[int, int]:
        chunk = self._config.chunk_size
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
                        self.memory.reserve(2 * chunk),
                        self._transport.stream("GET", info.download_url) as resp,
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

            return await self._slot_call(fetch)

        return await self._transport.retrying(once, method="GET", url=info.download_url)

    async def _download_ranges(
        self, info: FileContent, size: int, part_path: Path, key: str, progress: _Progress
    ) -> tuple[int, set[int]]:
        """Fetch ``size`` bytes as concurrent ranges into ``part_path`` (resuming from the
        journal); return their CRC32C and the whole-object CRC32Cs storage stated alongside
        (``x-goog-hash`` describes the whole object even on a 206)."""
        part_size = self._config.part_size
        ranges = plan_parts(size, part_size)
        entry = await self.journal.get("download", key)
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
                            self.memory.reserve(2 * self._config.chunk_size),
                            self._transport.stream(
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
                        return await self._slot_call(fetch)
                    except APIStatusError as exc:
                        if exc.status_code == 412:
                            raise _ObjectChanged from exc
                        raise

                tag = await self._transport.retrying(once, method="GET", url=info.download_url)
                if etag is not None and tag is not None and tag != etag:
                    raise _ObjectChanged
                done[0] += length
                await self.journal.put(
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
        chunk = self._config.chunk_size
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
                async with self._transport.stream("GET", info.download_url) as resp:
                    data = bytearray()
                    async for piece in resp.content.iter_any():
                        data += piece
                        if size is not None and len(data) > size:
                            # Stop reading: a storage server that keeps sending would fill memory.
                            raise TransferError(
                                f"File {file_id} is longer than its stated {size} bytes"
                            )
                    return bytes(data), _goog_crc(resp.headers.get("x-goog-hash"))

            return await self._slot_call(fetch)

        data, stored = await self._transport.retrying(once, method="GET", url=info.download_url)
        if size is not None and len(data) != size:
            raise TransferError(f"File {file_id} ended at {len(data)} of {size} bytes")
        crc = crc32c_extend(0, data)
        if info.crc32c_hash is not None and crc != crc32c_from_b64(info.crc32c_hash):
            raise IntegrityError(f"File {file_id} does not match its CRC32C")
        if stored is not None and crc != stored:
            raise IntegrityError(f"File {file_id} does not match the storage checksum")
        return data

    # -- bulk -------------------------------------------------------------------------------

    async def run_bulk(
        self,
        items: list[T],
        worker: Callable[[T], Awaitable[Any]],
        concurrency: int | None,
    ) -> list[Any]:
        """Run ``worker`` over ``items`` with bounded parallelism; results (or errors) in order."""
        width = max(1, min(concurrency or self.limiter.ceiling, len(items) or 1))
        results: list[Any] = [None] * len(items)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(items)):
            queue.put_nowait(index)

        async def loop() -> None:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    results[index] = await worker(items[index])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    results[index] = exc

        await _gather_all([loop() for _ in range(width)])
        return results

    async def upload_many(
        self,
        sources: Iterable[Any],
        *,
        concurrency: int | None,
        attribution: dict[str, str],
        on_progress: ProgressCallback | None,
        skip_existing: bool,
        content_type: str | None,
    ) -> list[UploadOutcome]:
        expanded = expand_sources(sources)
        progress = _Progress("upload", on_progress, len(expanded))
        existing: dict[str, str] = {}
        if skip_existing:
            existing = await self._existing_by_name()

        async def one(item: tuple[object, Any, str | None]) -> UploadOutcome:
            original, src, name = item
            try:
                if skip_existing:
                    skipped = await self._skip_if_present(src, name, existing, progress)
                    if skipped is not None:
                        return UploadOutcome(source=original, file=skipped, skipped=True)
                upload, was_there = await self.upload(
                    src,
                    name=name,
                    content_type=content_type,
                    attribution=attribution,
                    progress=progress,
                )
                return UploadOutcome(source=original, file=upload, skipped=was_there)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                label = name or (os.fspath(src) if isinstance(src, str | os.PathLike) else "?")
                progress.finished_file(TransferPhase.FAILED, str(label), 0, None)
                return UploadOutcome(source=original, error=exc)

        return await self.run_bulk(expanded, one, concurrency)

    async def _existing_by_name(self) -> dict[str, str]:
        found: dict[str, str] = {}
        url: str | None = "/v1/files"
        params: dict[str, Any] | None = {"limit": 1000}
        followed: set[str] = set()
        while url is not None:
            response = await self.api("GET", url, params=params)
            for item in _model(response, list[FileInfo]):
                name = item.original_path or item.file_name
                if name and item.crc32c_hash:
                    found.setdefault(name, f"{item.file_id}\x1f{item.crc32c_hash}")
            url, params = response.next_url, None
            if url is not None and (url in followed or not self._transport.is_api_origin(url)):
                # As the pager does: never follow a link off the API's origin, nor loop.
                raise APIResponseValidationError(
                    "The file listing's next-page link leaves the API or repeats a page",
                    method="GET",
                    path="/v1/files",
                    request_id=response.request_id,
                )
            if url is not None:
                followed.add(url)
        return found

    async def _skip_if_present(
        self, src: Any, name: str | None, existing: dict[str, str], progress: _Progress
    ) -> FileUpload | None:
        if not isinstance(src, str | os.PathLike):
            return None
        label = name or Path(src).name
        hit = existing.get(label)
        if hit is None:
            return None
        file_id, remote = hit.split("\x1f", 1)
        local = await asyncio.to_thread(_file_crc, Path(src))
        if local != crc32c_from_b64(remote):
            return None
        size = os.path.getsize(src)
        progress.total_done += size
        progress.finished_file(TransferPhase.SKIPPED, label, size, size)
        return FileUpload(file_id=file_id, file_name=label, size_bytes=size, crc32c_hash=remote)

    async def download_many(
        self,
        file_ids: Iterable[str],
        dest_dir: Path,
        *,
        concurrency: int | None,
        on_progress: ProgressCallback | None,
        skip_existing: bool,
        overwrite: bool,
    ) -> list[DownloadOutcome]:
        ids = list(file_ids)
        progress = _Progress("download", on_progress, len(ids))
        dest_dir.mkdir(parents=True, exist_ok=True)
        claimed: set[Path] = set()

        async def one(file_id: str) -> DownloadOutcome:
            try:
                path, skipped = await self.download(
                    file_id,
                    dest_dir,
                    overwrite=overwrite,
                    progress=progress,
                    skip_existing=skip_existing,
                    claimed=claimed,
                )
                return DownloadOutcome(file_id=file_id, path=path, skipped=skipped)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                progress.finished_file(TransferPhase.FAILED, file_id, 0, None)
                return DownloadOutcome(file_id=file_id, error=exc)

        return await self.run_bulk(ids, one, concurrency)


# -- helpers ------------------------------------------------------------------------------------


def _fpath(file_id: str, suffix: str = "") -> str:
    return f"/v1/files/{path_segment(file_id, 'file_id')}{suffix}"


def _json(response: Response) -> Any:
    """A response's decoded JSON, or :class:`APIResponseValidationError` naming the request."""
    try:
        return response.json()
    except ValueError as exc:  # includes UnicodeDecodeError
        raise APIResponseValidationError(
            "Response body is not JSON",
            method=response.method,
            path=response.path,
            request_id=response.request_id,
        ) from exc


def _model(response: Response, cls: type[T]) -> T:
    """Structure a response's body into ``cls``; a misfit names the request and its id."""
    try:
        return structure(_json(response), cls, what=f"{response.method} {response.path}")
    except APIResponseValidationError as exc:
        exc.method, exc.path, exc.request_id = response.method, response.path, response.request_id
        raise


def _json_object(response: Response) -> dict[str, Any]:
    data = _json(response)
    if not isinstance(data, dict):
        raise APIResponseValidationError(
            f"Response from {response.method} {response.path} is not a JSON object",
            method=response.method,
            path=response.path,
            request_id=response.request_id,
        )
    return data


async def _gather_all(coros: list[Awaitable[Any]]) -> None:
    """Run coroutines together; on the first failure cancel the rest and raise it."""
    if not coros:
        return
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _slices(
    data: bytes | memoryview, size: int, touch: Callable[[], None]
) -> AsyncIterator[memoryview]:
    """Hand a buffer to aiohttp in ``size`` slices, so the stall guard sees progress."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        touch()
        yield view[start : start + size]


def _goog_crc(header: str | None) -> int | None:
    if not header:
        return None
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "crc32c":
            with contextlib.suppress(ValueError):
                return crc32c_from_b64(value)
    return None


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


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            crc = crc32c_extend(crc, chunk)
    return crc

"""The blob directory: file bytes on disk, written so that nothing half-written is ever served.

Layout (under the data directory)::

    objects/<id[:2]>/<file_id>.<generation>   a stored object (immutable once in place)
    uploads/<file_id>.<generation>            a multipart upload in progress: one file of the
                                              planned size, each part written at its offset
    tmp/<random>.tmp                          a single PUT (or a re-sent part) being received

Objects
    A single PUT is written to ``tmp/``, fsynced, then renamed to its final name (and the
    directory fsynced), so a final name only ever holds complete bytes. A final file is never
    modified: new bytes for the same file get a new *generation*, hence a new name, and the
    metadata row is switched to it in one transaction (the old file is then unlinked; a reader
    that opened it keeps reading consistent bytes, and the ``ETag``, derived from the generation,
    changes). A row points at a name only after the rename.

Multipart uploads (:class:`UploadFile`)
    The first part PUT of an upload creates ``uploads/<file_id>.<generation>``, preallocated to the
    planned size and fsynced (with its directory) before the file row names it. Each part is
    streamed straight into its range with ``pwritev`` and checksummed on the way; once complete
    and verified, the file is ``fdatasync``-ed, and only then is the part recorded. Confirming
    checks the recorded parts, joins their CRC32Cs without reading the bytes, fsyncs the file and
    renames it to its object name: the bytes are written once, never copied.

    Crash semantics: a part listed by the database (and so by ``upload-status``) is on disk. A
    killed process loses nothing written; after a power cut a part's record may be lost (the part
    is then reported missing and sent again) but never outlives its bytes. Re-sending a recorded
    part with different bytes receives them in ``tmp/`` first, forgets the part with a durable
    commit, and only then overwrites the range; the same bytes again change nothing. So a bad
    re-send never damages the good copy, and a listed part never names half-overwritten bytes.

    Concurrency: parts of one upload are written concurrently (distinct ranges of one file
    descriptor). Two PUTs of the same part never write at once: the newer claims the part, the
    older one stops before its next write (:class:`PartSuperseded`), and the newer starts once the
    older one's disk work has finished. Confirming *seals* the upload (:meth:`UploadFile.seal`):
    writes not yet started are refused (:class:`UploadSealed`) and those in progress are waited
    for, so the renamed object is never written to again. Deleting or re-planning an upload
    discards its file the same way.

Start-up
    ``tmp/`` is emptied; object and upload files no row names (left by a crash between rename or
    creation and commit) are removed; an upload whose file is missing or of the wrong size has its
    parts forgotten (:meth:`BlobStore.lost_uploads_sync`).

Threading model
    All disk work runs on a small dedicated thread pool, never on the event loop. A writer keeps
    at most one write in flight while the caller reads the next chunks from the network (double
    buffering), and hands the socket's chunks over as one vectored write (no joining copy).
    CRC32C is computed as chunks are queued, on the loop thread, where it is cheaper than the GIL
    hand-offs of doing it elsewhere. A single PUT syncs the bytes already written in the
    background every :data:`SYNC_EVERY` bytes, so the final fsync only waits for the tail.
    Cancelling the awaiting coroutine does not stop a write in progress: :meth:`TempBlob.abort`
    chains the cleanup after it, and an upload file's descriptor is closed only once no request
    holds it and no write on it is running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import shutil
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import google_crc32c

__all__ = [
    "BlobStore",
    "PartClaim",
    "PartSuperseded",
    "PartWriter",
    "TempBlob",
    "UploadFile",
    "UploadSealed",
    "crc32c_b64",
    "decode_crc32c",
    "native_executable_kind",
]

T = TypeVar("T")

#: Bytes read from disk per step when copying or serving without sendfile.
READ_CHUNK = 4 * 1024 * 1024
#: A single PUT starts syncing what it wrote so far each time this many more bytes arrived.
SYNC_EVERY = 32 * 1024 * 1024
#: The most buffers one vectored write takes (Linux and macOS accept 1024).
_IOV_MAX = 1024
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: ``fdatasync`` where the platform has it (not macOS), else ``fsync``.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

# google_crc32c ships without type hints; this is its C implementation's streaming checksum.
_Checksum: Any = google_crc32c.Checksum

Chunks = bytes | Sequence[bytes]


def crc32c_b64(digest: bytes) -> str:
    """The GCS wire form of a CRC32C: base64 of its 4 big-endian bytes."""
    return base64.b64encode(digest).decode("ascii")


def decode_crc32c(text: str) -> bytes | None:
    """The 4 bytes of a base64 CRC32C, or ``None`` when ``text`` is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == 4 else None


def native_executable_kind(
    head: bytes, tail_at: int | None = None, tail: bytes = b""
) -> str | None:
    """Name the native executable format ``head`` starts with (ELF, PE, Mach-O), else ``None``.

    Args:
        head: The first bytes of the file (at least 64 for PE detection).
        tail_at: For PE files whose header lies beyond ``head``: the offset ``tail`` was read from.
        tail: The 4 bytes at ``tail_at``.
    """
    if head.startswith(b"\x7fELF"):
        return "ELF"
    if head[:4] in (
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
    ):
        return "Mach-O"
    if head[:4] == b"\xca\xfe\xba\xbe" and len(head) >= 8:
        # Shared with Java class files; a universal binary has a small architecture count where
        # a class file has its version (45 or more).
        (count,) = struct.unpack(">I", head[4:8])
        if 0 < count < 45:
            return "Mach-O"
    if head.startswith(b"MZ") and len(head) >= 64:
        (pe_offset,) = struct.unpack("<I", head[0x3C:0x40])
        if pe_offset + 4 <= len(head):
            if head[pe_offset : pe_offset + 4] == b"PE\0\0":
                return "PE"
        elif tail_at == pe_offset and tail == b"PE\0\0":
            return "PE"
    return None


def _close_opened(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _as_list(data: Chunks) -> list[bytes]:
    if isinstance(data, bytes):
        return [data] if data else []
    return [chunk for chunk in data if chunk]


def _write_all(fd: int, buffers: Sequence[bytes], offset: int | None) -> None:
    """Write every byte of ``buffers`` (at ``offset``, or at the file position when ``None``)."""
    views = [memoryview(b) for b in buffers]
    first = 0
    while first < len(views):
        batch = views[first : first + _IOV_MAX]
        if offset is None:
            written = os.writev(fd, batch)
        else:
            written = os.pwritev(fd, batch, offset)
            offset += written
        if written <= 0:
            raise OSError(errno.EIO, "a write made no progress")
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


def _preallocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes, allocated up front where the file system can (so a full disk
    fails the first part, not a later one), else as a sparse file."""
    try:
        os.posix_fallocate(fd, 0, size)
    except AttributeError:
        os.ftruncate(fd, size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)


def _copy_range(src: Path, fd: int, offset: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``src`` to ``offset`` of ``fd``, then ``fdatasync``."""
    with open(src, "rb", buffering=0) as f:
        done = 0
        while done < size:
            step = min(READ_CHUNK, size - done)
            try:
                moved = os.copy_file_range(f.fileno(), fd, step, done, offset + done)
            except (AttributeError, OSError):
                chunk = os.pread(f.fileno(), step, done)
                if chunk:
                    _write_all(fd, [chunk], offset + done)
                moved = len(chunk)
            if moved <= 0:
                raise OSError(f"{src.name} holds {done} bytes, expected {size}")
            done += moved
    _datasync(fd)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` from any thread (dropped once the loop is closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


class TempBlob:
    """Bytes being written under ``tmp/``, checksummed as they go; see the module docstring.

    Use :meth:`write` for each batch of chunks, then :meth:`finish` (fsync, close; returns size
    and CRC32C) and :meth:`install` (atomic rename into place). Call :meth:`abort` on any failure
    path.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.path = store.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        self._file: BinaryIO | None = None
        self._crc = _Checksum()
        self._size = 0
        self._synced = 0
        self._pending: Future[Any] | None = None
        self._syncing: Future[Any] | None = None
        self._finished = False
        self._aborted = False

    def __repr__(self) -> str:
        return f"<TempBlob {self.path.name} {self._size} bytes>"

    # -- worker-thread side -------------------------------------------------------------------

    def _ensure_open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115 (closed in _close_sync)
        return self._file

    def _write_sync(self, buffers: list[bytes]) -> None:
        _write_all(self._ensure_open().fileno(), buffers, None)

    def _finish_sync(self, durable: bool) -> None:
        f = self._ensure_open()
        if durable:
            os.fsync(f.fileno())
        f.close()
        self._file = None

    def _cleanup_sync(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- event-loop side ----------------------------------------------------------------------

    async def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wrap_future(pending)

    async def _settle_sync(self) -> None:
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            await asyncio.wrap_future(syncing)

    async def write(self, data: Chunks) -> None:
        """Queue ``data`` (bytes, or a batch of chunks written in one vectored call), after waiting
        for the previous write."""
        buffers = _as_list(data)
        # The checksum is taken here, on the loop thread: it costs well under a millisecond per
        # MiB, and doing it on the writing thread makes the two threads fight over the GIL
        # (measured: about a third of upload throughput lost).
        for chunk in buffers:
            self._crc.update(chunk)
            self._size += len(chunk)
        await self._settle()
        syncing = self._syncing
        due = self._file is not None and self._size - self._synced >= SYNC_EVERY
        if due and (syncing is None or syncing.done()):
            # Start the disk on what is already written while the next bytes arrive; the sync's
            # outcome is collected at the next round or at finish().
            await self._settle_sync()
            assert self._file is not None
            self._synced = self._size
            self._syncing = self._store.executor.submit(_datasync, self._file.fileno())
        self._pending = self._store.executor.submit(self._write_sync, buffers)

    async def finish(self, *, durable: bool = True) -> tuple[int, bytes]:
        """Flush, fsync (unless ``durable`` is false: bytes only copied elsewhere) and close;
        return the size and the CRC32C digest (4 bytes)."""
        await self._settle()
        await self._settle_sync()
        self._pending = self._store.executor.submit(self._finish_sync, durable)
        await self._settle()
        self._finished = True
        return self._size, self._crc.digest()

    async def install(self, dest: Path) -> None:
        """Rename the finished bytes to ``dest`` atomically (its directory is created)."""
        if not self._finished:
            raise RuntimeError("finish() the blob before installing it")

        def move() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, dest)
            _fsync_dir(dest.parent)

        await self._store.run(move)

    def abort(self) -> None:
        """Discard the bytes; safe to call at any point, including while a write is running."""
        if self._aborted:
            return
        self._aborted = True
        running = [f for f in (self._pending, self._syncing) if f is not None and not f.done()]
        self._pending = self._syncing = None
        if not running:
            self._cleanup_sync()
            return
        left = [len(running)]
        lock = threading.Lock()

        def after(_f: Future[Any]) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                self._cleanup_sync()

        for future in running:
            future.add_done_callback(after)


class UploadSealed(Exception):
    """The upload is being confirmed, or was confirmed, re-planned or deleted: nothing more may
    be written to its file."""


class PartSuperseded(Exception):
    """A newer PUT of the same part took it over; the older one writes nothing more."""


class _Gauge:
    """A count of operations in progress, awaitable until it drops to zero (loop thread only)."""

    def __init__(self) -> None:
        self.value = 0
        self._zero = asyncio.Event()
        self._zero.set()

    def up(self) -> None:
        self.value += 1
        self._zero.clear()

    def down(self) -> None:
        self.value -= 1
        if not self.value:
            self._zero.set()

    async def zero(self) -> None:
        while self.value:
            await self._zero.wait()


class PartClaim:
    """One request's hold on a part number of an upload; see :meth:`UploadFile.claim`."""

    def __init__(self, upload: UploadFile, number: int) -> None:
        self.upload = upload
        self.number = number
        self.superseded = False

    def __repr__(self) -> str:
        return f"<PartClaim {self.upload.file_id} #{self.number}>"

    def release(self) -> None:
        """Give the part up (a later claim then needs to wait for nothing of this one's)."""
        if self.upload._claims.get(self.number) is self:
            del self.upload._claims[self.number]


class UploadFile:
    """The file a multipart upload's parts are written into, shared by its concurrent requests.

    Obtained from :meth:`BlobStore.open_upload` (which opens the descriptor once for every holder).
    Disk and database work on it runs through :meth:`run` and :meth:`guard`, which refuse to start
    once the upload is sealed or the caller's claim superseded, and count what is in progress so
    that :meth:`seal` and :meth:`claim` can wait for it. See the module docstring.
    """

    def __init__(self, store: BlobStore, file_id: str, generation: int) -> None:
        self.store = store
        self.file_id = file_id
        self.generation = generation
        self.path = store.upload_path(file_id, generation)
        self.fd = -1
        self.sealed = False
        self._users = 0
        self._ops = _Gauge()
        self._part_ops: dict[int, _Gauge] = {}
        self._claims: dict[int, PartClaim] = {}
        self._opening: Future[int] | None = None

    def __repr__(self) -> str:
        return f"<UploadFile {self.path.name}{' sealed' if self.sealed else ''}>"

    # -- descriptor ---------------------------------------------------------------------------

    async def _open(self) -> None:
        if self.fd >= 0:
            return
        if self._opening is None:
            loop = asyncio.get_running_loop()
            opening = self.store.executor.submit(os.open, self.path, os.O_RDWR | _O_CLOEXEC)
            self._opening = opening
            opening.add_done_callback(lambda f: _call_soon(loop, self._opened, f))
        # Shielded: a waiter cancelled must not cancel the open the others wait for.
        await asyncio.shield(asyncio.wrap_future(self._opening))

    def _opened(self, future: Future[int]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.fd = future.result()
        self._maybe_close()

    def _maybe_close(self) -> None:
        """Close the descriptor and forget this handle once nobody holds it and nothing runs."""
        if self._users or self._ops.value:
            return
        if self._opening is not None and not self._opening.done():
            return  # _opened() comes back here
        fd, self.fd = self.fd, -1
        self._opening = None
        if fd >= 0:
            os.close(fd)
        key = (self.file_id, self.generation)
        if self.store._uploads.get(key) is self:
            del self.store._uploads[key]

    # -- operations ---------------------------------------------------------------------------

    def check(self, claim: PartClaim | None = None) -> None:
        """Raise if nothing more may be written (for ``claim``)."""
        if self.sealed:
            raise UploadSealed(self.file_id)
        if claim is not None and claim.superseded:
            raise PartSuperseded(claim.number)

    def _begin(self, claim: PartClaim | None) -> None:
        self.check(claim)
        self._ops.up()
        if claim is not None:
            self._part_ops.setdefault(claim.number, _Gauge()).up()

    def _end(self, claim: PartClaim | None) -> None:
        self._ops.down()
        if claim is not None:
            self._part_ops[claim.number].down()
        self._maybe_close()

    def run(self, claim: PartClaim | None, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """Start ``fn(*args)`` on a disk thread as an operation (raises :class:`UploadSealed` or
        :class:`PartSuperseded` instead of starting); await the result.

        The operation counts as in progress until the thread is done with it, even if the
        awaiting coroutine is cancelled first.
        """
        self._begin(claim)
        try:
            future = self.store.executor.submit(fn, *args)
        except BaseException:
            self._end(claim)
            raise
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda _f: _call_soon(loop, self._end, claim))
        return asyncio.wrap_future(future)

    async def guard(self, claim: PartClaim | None, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step()`` (e.g. a database transaction) as an operation, like :meth:`run`."""
        self._begin(claim)
        try:
            task = asyncio.ensure_future(step())
        except BaseException:
            self._end(claim)
            raise
        task.add_done_callback(lambda _t: self._end(claim))
        return await asyncio.shield(task)

    async def claim(self, number: int) -> PartClaim:
        """Take part ``number`` over: an earlier claim is superseded (it starts nothing more), and
        this returns once its operations in progress have finished. Release the claim when done."""
        previous = self._claims.get(number)
        if previous is not None:
            previous.superseded = True
        claim = PartClaim(self, number)
        self._claims[number] = claim
        gauge = self._part_ops.get(number)
        if gauge is not None:
            await gauge.zero()
        return claim

    async def seal(self) -> None:
        """Refuse further operations and wait for those in progress (before confirming)."""
        self.sealed = True
        await self._ops.zero()

    def unseal(self) -> None:
        """Accept operations again (a confirm that failed its checks)."""
        if self.store._uploads.get((self.file_id, self.generation)) is self:
            self.sealed = False

    def writer(self, claim: PartClaim, offset: int) -> PartWriter:
        """A writer of ``claim``'s part, whose range starts at ``offset``."""
        return PartWriter(self, claim, offset)


class PartWriter:
    """One part's bytes written in place into its upload file, checksummed as they go.

    Use :meth:`write` for each batch of chunks, then :meth:`finish` (waits for the writes; returns
    the size and CRC32C). The caller then ``fdatasync``-s (:meth:`sync`) before recording the part.
    """

    def __init__(self, upload: UploadFile, claim: PartClaim, offset: int) -> None:
        self._upload = upload
        self._claim = claim
        self._offset = offset
        self._crc = _Checksum()
        self._size = 0
        self._pending: Awaitable[None] | None = None

    def __repr__(self) -> str:
        return f"<PartWriter {self._upload.file_id} #{self._claim.number} {self._size} bytes>"

    async def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def write(self, data: Chunks) -> None:
        """Queue ``data`` for writing after the bytes already written (one write in flight)."""
        buffers = _as_list(data)
        position = self._offset + self._size
        for chunk in buffers:
            self._crc.update(chunk)
            self._size += len(chunk)
        await self._settle()
        self._pending = self._upload.run(
            self._claim, _write_all, self._upload.fd, buffers, position
        )

    async def finish(self) -> tuple[int, bytes]:
        """Wait for the writes; return the size and the CRC32C digest (4 bytes)."""
        await self._settle()
        return self._size, self._crc.digest()

    async def sync(self) -> None:
        """``fdatasync`` the upload file, making this part's bytes durable."""
        await self._upload.run(self._claim, _datasync, self._upload.fd)

    def abort(self) -> None:
        """Stop; a write in progress finishes on its own (its error, if any, is dropped)."""
        pending, self._pending = self._pending, None
        if isinstance(pending, asyncio.Future):
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())


class BlobStore:
    """The blob directory of one data directory; see the module docstring.

    Args:
        root: The data directory.
        workers: Threads for disk work.
    """

    def __init__(self, root: Path, *, workers: int = 4) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.uploads_dir = root / "uploads"
        self.tmp_dir = root / "tmp"
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="labric-blob")
        self._gen_lock = threading.Lock()
        self._last_gen = 0
        self._uploads: dict[tuple[str, int], UploadFile] = {}

    def __repr__(self) -> str:
        return f"<BlobStore {self.root}>"

    def prepare_sync(self) -> None:
        """Create the directories and empty ``tmp/`` (run before serving)."""
        for path in (self.objects_dir, self.uploads_dir):
            path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def sweep_sync(
        self, objects: Collection[tuple[str, int]], uploads: Collection[tuple[str, int]]
    ) -> int:
        """Remove object and upload files no metadata row names (and the ``parts/`` folder of the
        one-file-per-part layout); return how many files were removed."""
        removed = 0
        for shard in self.objects_dir.iterdir() if self.objects_dir.is_dir() else ():
            for path in shard.iterdir():
                file_id, _, gen = path.name.rpartition(".")
                if not (gen.isdigit() and (file_id, int(gen)) in objects):
                    path.unlink(missing_ok=True)
                    removed += 1
        for path in self.uploads_dir.iterdir() if self.uploads_dir.is_dir() else ():
            file_id, _, gen = path.name.rpartition(".")
            if not (gen.isdigit() and (file_id, int(gen)) in uploads):
                path.unlink(missing_ok=True)
                removed += 1
        legacy = self.root / "parts"
        if legacy.is_dir():
            removed += sum(1 for path in legacy.rglob("*") if path.is_file())
            shutil.rmtree(legacy, ignore_errors=True)
        return removed

    def lost_uploads_sync(self, uploads: Mapping[tuple[str, int], int]) -> list[str]:
        """The files whose upload file (named by a row, with the size given) is missing or of
        another size; such a file is removed, and the caller forgets those uploads' parts."""
        lost = []
        for (file_id, generation), size in uploads.items():
            path = self.upload_path(file_id, generation)
            try:
                found = path.stat().st_size
            except FileNotFoundError:
                found = -1
            if found != size:
                path.unlink(missing_ok=True)
                lost.append(file_id)
        return lost

    def close(self) -> None:
        """Wait for disk work in progress and stop the threads."""
        self.executor.shutdown(wait=True)

    def new_generation(self) -> int:
        """A fresh generation number: increasing, and unique within this data directory."""
        with self._gen_lock:
            gen = max(time.time_ns() // 1000, self._last_gen + 1)
            self._last_gen = gen
            return gen

    def object_path(self, file_id: str, generation: int) -> Path:
        """Where generation ``generation`` of a file's object lives."""
        return self.objects_dir / file_id[:2] / f"{file_id}.{generation}"

    def upload_path(self, file_id: str, generation: int) -> Path:
        """Where the multipart upload file of generation ``generation`` lives."""
        return self.uploads_dir / f"{file_id}.{generation}"

    def part_path(self, file_id: str, number: int, generation: int) -> Path:
        """Where the one-file-per-part layout kept a part. Nothing is written there any more (the
        folder is removed at start); remove a file's bytes with :meth:`remove_file` instead."""
        return self.root / "parts" / file_id / f"{number}.{generation}"

    def writer(self) -> TempBlob:
        """A new temporary blob to write into."""
        return TempBlob(self)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the disk threads."""
        return await asyncio.wrap_future(self.executor.submit(fn, *args))

    async def remove(self, paths: Sequence[Path]) -> None:
        """Unlink files (missing ones are fine)."""

        def unlink_all() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        if paths:
            await self.run(unlink_all)

    # -- multipart uploads --------------------------------------------------------------------

    async def create_upload(self, file_id: str, size: int) -> int:
        """Create an upload file of ``size`` bytes, durably; return its generation (for the row
        to name, after this returns)."""
        generation = self.new_generation()
        path = self.upload_path(file_id, generation)

        def create() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
            try:
                _preallocate(fd, size)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            os.close(fd)
            _fsync_dir(self.uploads_dir)

        await self.run(create)
        return generation

    @contextlib.asynccontextmanager
    async def open_upload(self, file_id: str, generation: int) -> AsyncIterator[UploadFile]:
        """Hold the upload file of ``generation`` open for the block.

        Raises:
            UploadSealed: the file is gone (confirmed, re-planned or deleted meanwhile).
        """
        key = (file_id, generation)
        upload = self._uploads.get(key)
        if upload is None:
            upload = self._uploads[key] = UploadFile(self, file_id, generation)
        upload._users += 1
        try:
            try:
                await upload._open()
            except FileNotFoundError:
                raise UploadSealed(file_id) from None
            yield upload
        finally:
            upload._users -= 1
            upload._maybe_close()

    def discard_upload(self, file_id: str, generation: int) -> None:
        """Seal an upload file for good: requests still holding it write nothing more."""
        upload = self._uploads.pop((file_id, generation), None)
        if upload is not None:
            upload.sealed = True

    async def publish_upload(self, upload: UploadFile, dest: Path, size: int) -> None:
        """Fsync a sealed upload file and rename it to ``dest`` (no copy).

        Raises:
            OSError: the file is gone or not ``size`` bytes long.
        """

        def publish() -> None:
            found = os.fstat(upload.fd).st_size
            if found != size:
                raise OSError(f"{upload.path.name} holds {found} bytes, expected {size}")
            os.fsync(upload.fd)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(upload.path, dest)
            _fsync_dir(dest.parent)
            _fsync_dir(self.uploads_dir)

        if not upload.sealed:
            raise RuntimeError("seal() the upload before publishing it")
        await self.run(publish)

    async def unpublish(self, upload: UploadFile, dest: Path) -> None:
        """Undo :meth:`publish_upload` (its row could not be switched); best effort."""
        with contextlib.suppress(OSError):
            await self.run(os.replace, dest, upload.path)

    async def remove_file(self, file_id: str, generation: int, upload_generation: int) -> None:
        """Remove a file's bytes: its object (when ``generation`` is not 0) and its upload file
        (when ``upload_generation`` is not 0, sealing it first)."""
        paths = []
        if generation:
            paths.append(self.object_path(file_id, generation))
        if upload_generation:
            self.discard_upload(file_id, upload_generation)
            paths.append(self.upload_path(file_id, upload_generation))
        await self.remove(paths)

    async def copy_into(
        self, upload: UploadFile, claim: PartClaim, src: Path, offset: int, size: int
    ) -> None:
        """Copy a received part from ``src`` into its range and ``fdatasync`` (an operation of
        ``claim``)."""
        await upload.run(claim, _copy_range, src, upload.fd, offset, size)

    # -- reading ------------------------------------------------------------------------------

    async def read_head(self, path: Path, size: int) -> bytes:
        """The first ``size`` bytes of a file."""

        def read() -> bytes:
            with open(path, "rb") as f:
                return f.read(size)

        data: bytes = await self.run(read)
        return data

    async def executable_kind(self, path: Path) -> str | None:
        """The native executable format of a stored file, else ``None``."""

        def sniff() -> str | None:
            with open(path, "rb") as f:
                head = f.read(4096)
                kind = native_executable_kind(head)
                if kind is None and head.startswith(b"MZ") and len(head) >= 64:
                    (offset,) = struct.unpack("<I", head[0x3C:0x40])
                    if len(head) <= offset < 16 * 1024 * 1024:
                        f.seek(offset)
                        kind = native_executable_kind(head, offset, f.read(4))
                return kind

        kind: str | None = await self.run(sniff)
        return kind

    async def open_read(self, path: Path) -> BinaryIO:
        """Open a stored file for reading (the caller closes it).

        If the caller is cancelled while the file is being opened, it is closed once open.
        """
        future: Future[BinaryIO] = self.executor.submit(open, path, "rb")
        try:
            f = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_opened)
            raise
        return f

    async def read_at(self, f: BinaryIO, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` of an open file."""
        data: bytes = await self.run(os.pread, f.fileno(), size, offset)
        return data

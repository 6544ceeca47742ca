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

Copies (:meth:`BlobStore.share_object`)
    A copied file gets its own object name, a hard link to the source's object: no byte is
    copied, and since objects are immutable the two names always hold the same bytes. The file
    system counts the links, so deleting either file unlinks only its own name and the bytes stay
    while the other still names them; start-up's sweep, which keeps every name a row names, needs
    nothing more. Where the file system has no hard links, the bytes are copied instead (to
    ``tmp/``, fsynced, renamed into place, as a single PUT is).

Multipart uploads (:class:`UploadFile`)
    The first part PUT of an upload creates ``uploads/<file_id>.<generation>``, preallocated to the
    planned size and fsynced (with its directory) before the file row names it. Each part is
    streamed straight into its range with ``pwritev`` and checksummed on the way; once complete
    and verified, it is recorded as written but *not synced*, and answered: a part does not wait
    for a whole-file ``fdatasync`` (which the other parts' writes would keep lengthening, so
    parts in flight would queue behind one another's syncs). Syncs run in the background
    instead, one at a time per upload file (:meth:`UploadFile.part_written`): each covers every
    part written before it started and then marks those parts synced; another starts every
    :data:`SYNC_EVERY` bytes written, so the disk keeps up. Confirming checks the recorded parts,
    joins their CRC32Cs without reading the bytes, fsyncs the file and renames it to its object
    name: the bytes are written once, never copied, and synced before the durable confirm.

    Crash semantics: a part listed by the database (and so by ``upload-status``) was written to the
    file, and its record says whether it is synced. A killed process loses nothing written (the
    kernel holds it): on the next start in the same boot of the machine, the upload files with
    unsynced parts are synced and the parts kept. After a power cut or a crash of the machine
    (another boot), unsynced parts are forgotten and sent again (:func:`settle_unsynced_parts`); a
    synced part's record may be lost (it is then sent again) but never outlives its bytes.
    Re-sending a recorded part with different bytes receives them in ``tmp/`` first, forgets the
    part with a durable commit, and only then overwrites the range (synced before it is recorded
    again); the same bytes again change nothing. So a bad re-send never damages the good copy, and a
    listed part never names half-overwritten bytes.

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
    parts forgotten (:meth:`BlobStore.lost_uploads_sync`); unsynced parts are synced or forgotten
    (:func:`settle_unsynced_parts`).

Threading model
    All disk work runs on a dedicated thread pool, never on the event loop; it is large enough
    for many small uploads' syncs to wait on the disk together (they share its journal commits).
    A writer keeps at most one write in flight while the caller reads the next chunks from the
    network (double buffering), and hands the socket's chunks over as one vectored write (no
    joining copy).
    CRC32C is computed as chunks are queued, on the loop thread, where it is cheaper than the GIL
    hand-offs of doing it elsewhere. A single PUT syncs the bytes already written in the
    background every :data:`SYNC_EVERY` bytes, so the final fsync only waits for the tail; a
    small one is held in memory and written, synced and renamed into place in one step.
    Cancelling the awaiting coroutine does not stop a write in progress: :meth:`TempBlob.abort`
    chains the cleanup after it, and an upload file's descriptor is closed only once no request
    holds it and no write on it is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from labric.server.core import records
from labric.server.core.db import Database
from labric.server.core.diskio import (
    O_CLOEXEC,
    SYNC_EVERY,
    Checksum,
    Chunks,
    as_list,
    close_opened,
    copy_range,
    crc32c_b64,
    datasync,
    decode_crc32c,
    fsync_dir,
    native_executable_kind,
    preallocate,
    write_all,
)
from labric.server.core.uploads import (
    PartClaim,
    PartSuperseded,
    PartWriter,
    UploadFile,
    UploadSealed,
)

__all__ = [
    "BOOT_ID_FILE",
    "BlobStore",
    "PartClaim",
    "PartSuperseded",
    "PartWriter",
    "TempBlob",
    "UploadFile",
    "UploadSealed",
    "boot_id",
    "crc32c_b64",
    "decode_crc32c",
    "native_executable_kind",
    "settle_unsynced_parts",
]

T = TypeVar("T")

#: A temporary blob holds back its first bytes up to this size (see :meth:`TempBlob.write`).
HOLD_LIMIT = 1024 * 1024
#: Threads for disk work: enough for many small uploads' syncs to wait on the disk at once
#: (concurrent syncs share the file system's journal commits).
DEFAULT_WORKERS = 16


#: The file the kernel names its current boot in (Linux).
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_BOOT_ID_KEY = "boot_id"


def boot_id() -> str | None:
    """An id of the running boot of the machine, or ``None`` where there is none to read."""
    try:
        return BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None


async def settle_unsynced_parts(db: Database, blobs: BlobStore) -> int:
    """At start, decide what parts recorded but not yet synced are worth: return how many were
    forgotten.

    A killed server process loses nothing the kernel already holds, so when the machine has not
    restarted since the server last started (the same :func:`boot_id`), their bytes are there:
    their upload files are synced and the parts kept. After a restart (a power cut, a crash of
    the machine) or where the boot cannot be told, their bytes may be lost: they are forgotten,
    and their uploads resume by sending them again.
    """
    current = boot_id()
    last = await db.run(records.meta_get, _BOOT_ID_KEY)
    same_boot = current is not None and current == last
    uploads = await db.run(records.unsynced_uploads)
    if uploads and same_boot:
        await blobs.run(blobs.sync_uploads_sync, uploads)

    def settle(conn: Any) -> int:
        count = records.settle_unsynced_parts(conn, keep=same_boot)
        if current is not None:
            records.meta_set(conn, _BOOT_ID_KEY, current)
        return count

    settled = await db.run_durable(settle)
    return 0 if same_boot else settled


class TempBlob:
    """Bytes being written under ``tmp/``, checksummed as they go; see the module docstring.

    Use :meth:`write` for each batch of chunks, then :meth:`finish` (fsync, close; returns size
    and CRC32C) and :meth:`install` (atomic rename into place), or :meth:`checksum` and then
    ``finish(install=...)``, which does both in one step. Call :meth:`abort` on any failure
    path.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.path = store.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        self._file: BinaryIO | None = None
        self._crc = Checksum()
        self._size = 0
        self._synced = 0
        self._pending: Future[Any] | None = None
        self._syncing: Future[Any] | None = None
        self._finished = False
        self._aborted = False
        # The first bytes, held back until more come or the blob is finished (so a small body
        # costs one hop to a disk thread, not three).
        self._held: list[bytes] = []

    def __repr__(self) -> str:
        return f"<TempBlob {self.path.name} {self._size} bytes>"

    # -- worker-thread side -------------------------------------------------------------------

    def _ensure_open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115 (closed in _close_sync)
        return self._file

    def _write_sync(self, buffers: list[bytes]) -> None:
        write_all(self._ensure_open().fileno(), buffers, None)

    def _finish_sync(self, durable: bool, held: list[bytes], dest: Path | None) -> None:
        f = self._ensure_open()
        if held:
            write_all(f.fileno(), held, None)
        if durable:
            os.fsync(f.fileno())
        f.close()
        self._file = None
        if dest is not None:
            self._move(dest)

    def _move(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, dest)
        fsync_dir(dest.parent)

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
        for the previous write. The first :data:`HOLD_LIMIT` bytes are held back and written
        with what follows them, or by :meth:`finish`."""
        buffers = as_list(data)
        # The checksum is taken here, on the loop thread: it costs well under a millisecond per
        # MiB, and doing it on the writing thread makes the two threads fight over the GIL
        # (measured: about a third of upload throughput lost).
        for chunk in buffers:
            self._crc.update(chunk)
            self._size += len(chunk)
        if self._pending is None and self._file is None and self._size <= HOLD_LIMIT:
            self._held += buffers
            return
        if self._held:
            buffers, self._held = self._held + buffers, []
        await self._settle()
        syncing = self._syncing
        due = self._file is not None and self._size - self._synced >= SYNC_EVERY
        if due and (syncing is None or syncing.done()):
            # Start the disk on what is already written while the next bytes arrive; the sync's
            # outcome is collected at the next round or at finish().
            await self._settle_sync()
            assert self._file is not None
            self._synced = self._size
            self._syncing = self._store.executor.submit(datasync, self._file.fileno())
        self._pending = self._store.executor.submit(self._write_sync, buffers)

    def checksum(self) -> tuple[int, bytes]:
        """The size and CRC32C digest (4 bytes) of everything written so far (no I/O)."""
        return self._size, self._crc.digest()

    async def finish(
        self, *, durable: bool = True, install: Path | None = None
    ) -> tuple[int, bytes]:
        """Flush, fsync (unless ``durable`` is false: bytes only copied elsewhere) and close;
        with ``install``, also rename the bytes there as :meth:`install` does, in the same
        step. Return the size and the CRC32C digest (4 bytes)."""
        await self._settle()
        await self._settle_sync()
        held, self._held = self._held, []
        self._pending = self._store.executor.submit(self._finish_sync, durable, held, install)
        await self._settle()
        self._finished = True
        return self._size, self._crc.digest()

    async def install(self, dest: Path) -> None:
        """Rename the finished bytes to ``dest`` atomically (its directory is created)."""
        if not self._finished:
            raise RuntimeError("finish() the blob before installing it")
        await self._store.run(self._move, dest)

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


class BlobStore:
    """The blob directory of one data directory; see the module docstring.

    Args:
        root: The data directory.
        workers: Threads for disk work.
    """

    def __init__(self, root: Path, *, workers: int = DEFAULT_WORKERS) -> None:
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

    def sync_uploads_sync(self, uploads: Collection[tuple[str, int]]) -> None:
        """``fdatasync`` these upload files (missing ones are skipped)."""
        for file_id, generation in uploads:
            try:
                fd = os.open(self.upload_path(file_id, generation), os.O_RDWR | O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                datasync(fd)
            finally:
                os.close(fd)

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
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_CLOEXEC, 0o666)
            try:
                preallocate(fd, size)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            os.close(fd)
            fsync_dir(self.uploads_dir)

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
            upload = self._uploads[key] = UploadFile(
                self.executor,
                self._uploads,
                self.upload_path(file_id, generation),
                file_id,
                generation,
            )
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
            fsync_dir(dest.parent)
            fsync_dir(self.uploads_dir)

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

    async def share_object(self, src: Path, dest: Path) -> None:
        """Give the object at ``src`` a second name, ``dest``, durably: a hard link where the file
        system has them, else a full copy (see the module docstring).

        Raises:
            FileNotFoundError: ``src`` is gone (its file was deleted meanwhile).
        """

        def share() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except FileNotFoundError:
                raise
            except OSError:
                # No hard links here (or too many to one object): copy, as a single PUT lands.
                tmp = self.tmp_dir / f"{uuid.uuid4().hex}.tmp"
                try:
                    shutil.copyfile(src, tmp)
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp, dest)
                finally:
                    tmp.unlink(missing_ok=True)
            fsync_dir(dest.parent)

        await self.run(share)

    async def copy_into(
        self, upload: UploadFile, claim: PartClaim, src: Path, offset: int, size: int
    ) -> None:
        """Copy a received part from ``src`` into its range and ``fdatasync`` (an operation of
        ``claim``)."""
        await upload.run(claim, copy_range, src, upload.fd, offset, size)

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
            future.add_done_callback(close_opened)
            raise
        return f

    async def read_at(self, f: BinaryIO, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` of an open file."""
        data: bytes = await self.run(os.pread, f.fileno(), size, offset)
        return data

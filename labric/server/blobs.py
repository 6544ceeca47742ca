"""The blob directory: file bytes on disk, written so that nothing half-written is ever served.

Layout (under the data directory)::

    objects/<id[:2]>/<file_id>.<generation>   a stored object (immutable once in place)
    parts/<file_id>/<number>.<generation>     a stored part of a multipart upload
    tmp/<random>.tmp                          bytes being written

Invariants
    * Bytes are always written to ``tmp/`` first, fsynced, then renamed to their final name
      (and the directory fsynced). A final name therefore only ever holds complete bytes.
    * A final file is never modified. New bytes for the same file or part get a new
      *generation* and so a new name; the metadata row is then switched to the new generation in
      one transaction and the old file unlinked. A reader that opened the old generation keeps
      reading consistent bytes; the ``ETag`` (derived from the generation) changes.
    * The row points at a name only after the rename, so metadata never names a missing file
      (except transiently after a delete, which readers report as 404).
    * ``tmp/`` is emptied on start, and object or part files no row points at (left by a crash
      between rename and commit) are removed.

Threading model
    All disk work runs on a small dedicated thread pool, never on the event loop. A
    :class:`TempBlob` keeps at most one write in flight while the caller reads the next chunk from
    the network (double buffering). CRC32C is computed as chunks are queued (on the loop thread
    for network bodies, where it is cheaper than the GIL hand-offs of doing it elsewhere; on the
    copying thread when parts are assembled). Cancelling the
    awaiting coroutine does not stop a write in progress: :meth:`TempBlob.abort` chains the
    cleanup (close, unlink) after it, so no temporary file or descriptor is leaked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import google_crc32c

__all__ = [
    "BlobStore",
    "TempBlob",
    "crc32c_b64",
    "decode_crc32c",
    "native_executable_kind",
]

#: Bytes read from disk per step when copying or serving without sendfile.
READ_CHUNK = 4 * 1024 * 1024

# google_crc32c ships without type hints; this is its C implementation's streaming checksum.
_Checksum: Any = google_crc32c.Checksum


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


class TempBlob:
    """Bytes being written under ``tmp/``, checksummed as they go; see the module docstring.

    Use :meth:`write` for each chunk, then :meth:`finish` (fsync, close; returns size and CRC32C)
    and :meth:`install` (atomic rename into place). Call :meth:`abort` on any failure path.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.path = store.tmp_dir / f"{uuid.uuid4().hex}.tmp"
        self._file: BinaryIO | None = None
        self._crc = _Checksum()
        self._size = 0
        self._pending: Future[Any] | None = None
        self._finished = False
        self._aborted = False

    def __repr__(self) -> str:
        return f"<TempBlob {self.path.name} {self._size} bytes>"

    # -- worker-thread side -------------------------------------------------------------------

    def _ensure_open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self.path, "xb", buffering=0)  # noqa: SIM115 (closed in _close_sync)
        return self._file

    def _write_sync(self, data: bytes) -> None:
        f = self._ensure_open()
        view = memoryview(data)
        while view:
            written = f.write(view)
            view = view[written or 0 :]

    def _copy_sync(self, sources: Sequence[tuple[Path, int]]) -> None:
        f = self._ensure_open()
        for path, expected in sources:
            copied = 0
            with open(path, "rb", buffering=0) as src:
                while True:
                    chunk = src.read(READ_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    self._crc.update(chunk)
                    copied += len(chunk)
            if copied != expected:
                raise OSError(f"{path.name} holds {copied} bytes, expected {expected}")
            self._size += copied

    def _finish_sync(self) -> None:
        f = self._ensure_open()
        f.flush()
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

    async def write(self, data: bytes) -> None:
        """Queue ``data`` for writing, after waiting for the previous chunk's write."""
        # The checksum is taken here, on the loop thread: it costs well under a millisecond per
        # MiB, and doing it on the writing thread makes the two threads fight over the GIL
        # (measured: about a third of upload throughput lost).
        self._crc.update(data)
        self._size += len(data)
        await self._settle()
        self._pending = self._store.executor.submit(self._write_sync, data)

    async def copy_from(self, sources: Sequence[tuple[Path, int]]) -> None:
        """Append whole files (each with its expected size), checksumming as they are copied.

        Raises:
            OSError: a source is missing or its size differs from the one expected.
        """
        await self._settle()
        self._pending = self._store.executor.submit(self._copy_sync, sources)
        await self._settle()

    async def finish(self) -> tuple[int, bytes]:
        """Flush, fsync and close; return the size and the CRC32C digest (4 bytes)."""
        await self._settle()
        self._pending = self._store.executor.submit(self._finish_sync)
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
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _f: self._cleanup_sync())
        else:
            self._cleanup_sync()


class BlobStore:
    """The blob directory of one data directory; see the module docstring.

    Args:
        root: The data directory.
        workers: Threads for disk work.
    """

    def __init__(self, root: Path, *, workers: int = 4) -> None:
        self.root = root
        self.objects_dir = root / "objects"
        self.parts_dir = root / "parts"
        self.tmp_dir = root / "tmp"
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="labric-blob")
        self._gen_lock = threading.Lock()
        self._last_gen = 0

    def __repr__(self) -> str:
        return f"<BlobStore {self.root}>"

    def prepare_sync(self) -> None:
        """Create the directories and empty ``tmp/`` (run before serving)."""
        for path in (self.objects_dir, self.parts_dir):
            path.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def sweep_sync(self, objects: set[tuple[str, int]], parts: set[tuple[str, int, int]]) -> int:
        """Remove object and part files no metadata row names; return how many were removed."""
        removed = 0
        for shard in self.objects_dir.iterdir() if self.objects_dir.is_dir() else ():
            for path in shard.iterdir():
                file_id, _, gen = path.name.rpartition(".")
                if not (gen.isdigit() and (file_id, int(gen)) in objects):
                    path.unlink(missing_ok=True)
                    removed += 1
        for folder in self.parts_dir.iterdir() if self.parts_dir.is_dir() else ():
            for path in folder.iterdir():
                number, _, gen = path.name.partition(".")
                key = (
                    (folder.name, int(number), int(gen))
                    if number.isdigit() and gen.isdigit()
                    else None
                )
                if key not in parts:
                    path.unlink(missing_ok=True)
                    removed += 1
            with contextlib.suppress(OSError):
                folder.rmdir()
        return removed

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

    def part_path(self, file_id: str, number: int, generation: int) -> Path:
        """Where generation ``generation`` of a part lives."""
        return self.parts_dir / file_id / f"{number}.{generation}"

    def writer(self) -> TempBlob:
        """A new temporary blob to write into."""
        return TempBlob(self)

    async def run(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the disk threads."""
        return await asyncio.wrap_future(self.executor.submit(fn, *args))

    async def remove(self, paths: Sequence[Path]) -> None:
        """Unlink files (missing ones are fine), and their directory if it is a part folder."""

        def unlink_all() -> None:
            folders = set()
            for path in paths:
                path.unlink(missing_ok=True)
                if path.parent.parent == self.parts_dir:
                    folders.add(path.parent)
            for folder in folders:
                with contextlib.suppress(OSError):
                    folder.rmdir()

        if paths:
            await self.run(unlink_all)

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

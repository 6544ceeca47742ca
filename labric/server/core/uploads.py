"""Multipart uploads in the blob directory: one preallocated file per upload, each part written
at its offset by a :class:`PartWriter` (see :mod:`labric.server.core.blobs` for the semantics)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from labric.server.core.diskio import (
    O_CLOEXEC,
    SYNC_EVERY,
    Checksum,
    Chunks,
    as_list,
    call_soon,
    datasync,
    write_all,
)

__all__ = ["PartClaim", "PartSuperseded", "PartWriter", "UploadFile", "UploadSealed"]

T = TypeVar("T")


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


#: A part as a background sync covers it: its number and CRC32C (which names its bytes).
Part = tuple[int, str]


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

    Obtained from :meth:`~labric.server.core.blobs.BlobStore.open_upload` (which opens the
    descriptor once for every holder).
    Disk and database work on it runs through :meth:`run` and :meth:`guard`, which refuse to start
    once the upload is sealed or the caller's claim superseded, and count what is in progress so
    that :meth:`seal` and :meth:`claim` can wait for it. See the module docstring.
    """

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        registry: dict[tuple[str, int], UploadFile],
        path: Path,
        file_id: str,
        generation: int,
    ) -> None:
        # The store's executor and its table of open uploads (which this one leaves on close).
        self.executor = executor
        self._registry = registry
        self.file_id = file_id
        self.generation = generation
        self.path = path
        self.fd = -1
        self.sealed = False
        self._users = 0
        self._ops = _Gauge()
        self._part_ops: dict[int, _Gauge] = {}
        self._claims: dict[int, PartClaim] = {}
        self._opening: Future[int] | None = None
        # Background syncs (see part_written()): the one running, whether another is due when
        # it ends, the parts written and recorded that no sync has covered yet, bytes written
        # since the last sync started, and who hears of parts made durable.
        self._sync_running: asyncio.Future[None] | None = None
        self._sync_again = False
        self._unsynced: list[Part] = []
        self._written_since_sync = 0
        self._on_synced: Callable[[list[Part]], Any] | None = None
        #: Syncs of the file run so far (for tests and benchmarks).
        self.syncs = 0

    def __repr__(self) -> str:
        return f"<UploadFile {self.path.name}{' sealed' if self.sealed else ''}>"

    # -- descriptor ---------------------------------------------------------------------------

    async def _open(self) -> None:
        if self.fd >= 0:
            return
        if self._opening is None:
            loop = asyncio.get_running_loop()
            opening = self.executor.submit(os.open, self.path, os.O_RDWR | O_CLOEXEC)
            self._opening = opening
            opening.add_done_callback(lambda f: call_soon(loop, self._opened, f))
        # Shielded: a waiter cancelled must not cancel the open the others wait for.
        await asyncio.shield(asyncio.wrap_future(self._opening))

    def _opened(self, future: Future[int]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.fd = future.result()
        self._maybe_close()

    def _maybe_close(self) -> None:
        """Close the descriptor and forget this handle once nobody holds it and nothing runs."""
        if self._users or self._ops.value or self._sync_running is not None:
            return
        if self._opening is not None and not self._opening.done():
            return  # _opened() comes back here
        fd, self.fd = self.fd, -1
        self._opening = None
        if fd >= 0:
            os.close(fd)
        key = (self.file_id, self.generation)
        if self._registry.get(key) is self:
            del self._registry[key]

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
            future = self.executor.submit(fn, *args)
        except BaseException:
            self._end(claim)
            raise
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda _f: call_soon(loop, self._end, claim))
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
        if self._registry.get((self.file_id, self.generation)) is self:
            self.sealed = False

    # -- background syncs -----------------------------------------------------------------------

    def note_written(self, size: int) -> None:
        """Count ``size`` bytes handed to a write; every :data:`SYNC_EVERY` bytes, start a sync
        if none runs, so the disk works on what the parts write while they go on."""
        self._written_since_sync += size
        if self._written_since_sync >= SYNC_EVERY:
            self._want_sync()

    def part_written(
        self, number: int, crc32c: str, on_synced: Callable[[list[Part]], Any]
    ) -> None:
        """Note that part ``number`` (with this CRC32C) is written and recorded, not yet synced:
        a sync covering it starts now, or when the one running ends, and ``on_synced`` is then
        called (on the loop) with every part it made durable."""
        self._unsynced.append((number, crc32c))
        self._on_synced = on_synced
        self._want_sync()

    def _want_sync(self) -> None:
        if self._sync_running is not None:
            self._sync_again = True
            return
        if self.sealed:
            return  # publishing syncs the whole file itself
        covered, self._unsynced = self._unsynced, []
        self._written_since_sync = 0
        self._sync_again = False
        try:
            running = asyncio.ensure_future(self.run(None, datasync, self.fd))
        except (UploadSealed, PartSuperseded):
            return
        self.syncs += 1
        self._sync_running = running
        running.add_done_callback(lambda done: self._sync_ended(done, covered))

    def _sync_ended(self, done: asyncio.Future[None], covered: list[Part]) -> None:
        self._sync_running = None
        failed = done.cancelled() or done.exception() is not None
        if failed:
            # Not durable after all: the next sync covers these parts again.
            self._unsynced[:0] = covered
        elif covered and self._on_synced is not None:
            self._on_synced(covered)
        if (self._sync_again or self._unsynced) and not failed:
            self._want_sync()
        self._maybe_close()

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
        self._crc = Checksum()
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
        buffers = as_list(data)
        position = self._offset + self._size
        for chunk in buffers:
            self._crc.update(chunk)
            self._size += len(chunk)
        await self._settle()
        self._pending = self._upload.run(self._claim, write_all, self._upload.fd, buffers, position)
        self._upload.note_written(self._size + self._offset - position)

    async def finish(self) -> tuple[int, bytes]:
        """Wait for the writes; return the size and the CRC32C digest (4 bytes)."""
        await self._settle()
        return self._size, self._crc.digest()

    async def sync(self) -> None:
        """``fdatasync`` the upload file now, making this part's bytes durable (for callers that
        must wait; a part PUT leaves it to the background syncs instead)."""
        await self._upload.run(self._claim, datasync, self._upload.fd)

    def abort(self) -> None:
        """Stop; a write in progress finishes on its own (its error, if any, is dropped)."""
        pending, self._pending = self._pending, None
        if isinstance(pending, asyncio.Future):
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())

"""Scheduling: how many requests are in flight, how many bytes are buffered, how work is cut.

Every storage and API request a transfer makes takes a slot from one :class:`AdaptiveLimiter`
(requests in flight, never above the connection pool) and every buffered byte is reserved from
one :class:`MemoryBudget`. Small files and the parts of huge files share both, so memory stays
under the budget whatever the mix. The limiter halves its limit when the server answers 429 or
503 and grows back by one slot per run of successes (AIMD). Part buffers are reused through one
:class:`BufferPool`, so a long upload's resident memory stays at what the budget allows.

Large objects are cut into parts by :func:`iter_parts` (lazily: a plan is never a list as long as
its part count) or :func:`plan_parts`, and concurrent pieces of one transfer run together under
:func:`_gather_all`, which cancels the rest on the first failure (:func:`_gather_bounded` runs
many through a few workers). :func:`check_upload_size` and
:func:`check_part_plan` refuse what no upload can be: over :data:`MAX_UPLOAD_SIZE`, over
:data:`MAX_PARTS` parts, or a server's part plan that does not tile the file.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from labric.errors import TransferError

__all__ = [
    "MAX_PARTS",
    "MAX_UPLOAD_SIZE",
    "AdaptiveLimiter",
    "BufferPool",
    "MemoryBudget",
    "check_part_plan",
    "check_upload_size",
    "iter_parts",
    "plan_parts",
]

T = TypeVar("T")

#: The largest file the platform stores (5 TiB, as object stores).
MAX_UPLOAD_SIZE = 5 * 1024**4
#: The most parts one multipart upload may have.
MAX_PARTS = 10_000


# -- planning ---------------------------------------------------------------------------------


def plan_parts(size: int, part_size: int) -> list[tuple[int, int]]:
    """Split ``[0, size)`` into ``(offset, length)`` ranges of ``part_size`` (the last shorter).

    The ranges cover ``[0, size)`` exactly, in order, with no gap or overlap; a zero-byte object
    has no ranges.
    """
    return list(iter_parts(size, part_size))


def iter_parts(size: int, part_size: int) -> Iterator[tuple[int, int]]:
    """The ranges of :func:`plan_parts`, one at a time (memory does not grow with the count)."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    if size < 0:
        raise ValueError("size must not be negative")
    return ((offset, min(part_size, size - offset)) for offset in range(0, size, part_size))


def check_upload_size(name: str, size: int) -> None:
    """Refuse a source no upload can take, before anything is asked of the server.

    Raises:
        TransferError: ``size`` is over :data:`MAX_UPLOAD_SIZE`.
    """
    if size > MAX_UPLOAD_SIZE:
        raise TransferError(
            f"{name!r} is {size:,} bytes, over the {MAX_UPLOAD_SIZE:,}-byte (5 TiB) limit of "
            "an upload"
        )


class _PlannedPart(Protocol):
    @property
    def number(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def size(self) -> int: ...


def check_part_plan(size: int, part_size: object, parts: Iterable[_PlannedPart]) -> int:
    """Check a server's part plan for a ``size``-byte file; return its part size.

    The parts, taken in order of their numbers, must be numbered ``1..n`` and tile
    ``[0, size)`` in ``part_size`` steps (the last shorter): every byte sent once, none
    missing. They are compared one by one with :func:`iter_parts`, so an absurd plan fails on
    its first wrong part, without building anything as long as the file.

    Raises:
        TransferError: the plan is impossible (a part size that is not a positive whole number,
            over :data:`MAX_PARTS` parts, or parts that do not tile the file).
    """
    if not isinstance(part_size, int) or isinstance(part_size, bool) or part_size <= 0:
        raise TransferError(f"The server's part size {part_size!r} is not a positive number")
    count = -(-size // part_size)
    if count > MAX_PARTS:
        raise TransferError(
            f"The server's plan needs {count:,} parts of {part_size:,} bytes for {size:,} bytes; "
            f"an upload has at most {MAX_PARTS:,}"
        )
    expected = iter_parts(size, part_size)
    number = 0
    for number, part in enumerate(sorted(parts, key=lambda p: p.number), start=1):
        want = next(expected, None)
        if part.number != number or want is None or (part.offset, part.size) != want:
            raise TransferError(
                f"The server's part plan does not tile the file: part {part.number} is "
                f"{part.size:,} bytes at {part.offset:,}, expected "
                + (f"{want[1]:,} bytes at {want[0]:,}" if want else "no such part")
            )
    if number != count:
        raise TransferError(
            f"The server's part plan does not cover the file: {number:,} of {count:,} parts"
        )
    return part_size


# -- limits -----------------------------------------------------------------------------------


class AdaptiveLimiter:
    """Bounds requests in flight; halves on throttling and grows back one slot at a time (AIMD).

    A free slot is taken without yielding to the loop; waiters are served first come, first
    served, and a waiter cancelled just after it was handed a slot passes the slot on.

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
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def _take(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            waiter = waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    async def acquire(self) -> None:
        if not self._waiters and self.in_flight < self.limit:
            self._take()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release_now()  # handed a slot, then cancelled: pass it on
            else:
                self._wake()
            raise

    def release_now(self) -> None:
        """Give a slot back (never waits)."""
        self.in_flight -= 1
        self._wake()

    async def release(self) -> None:
        self.release_now()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        # Synchronous, so a cancelled request still gives its slot back.
        self.release_now()

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
            self.limit += 1
            self._wake()


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
    else to drain instead of deadlocking. Reservations are granted in the order they were asked
    for (a large one is not starved by a stream of small ones); one that fits while nobody waits
    is granted without yielding to the loop.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def reserve(self, nbytes: int) -> _Reservation:
        """An async context manager holding ``nbytes`` (capped at the budget) while inside."""
        return _Reservation(self, min(max(nbytes, 0), self.budget))

    def _take(self, amount: int) -> None:
        self.used += amount
        if self.used > self.peak:
            self.peak = self.used

    async def _acquire(self, amount: int) -> None:
        if not self._waiters and self.used + amount <= self.budget:
            self._take(amount)
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((amount, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(amount)  # granted, then cancelled: give it back
            else:
                self._wake()  # a smaller reservation behind this one may fit now
            raise

    def _release(self, amount: int) -> None:
        self.used -= amount
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            amount, waiter = waiters[0]
            if waiter.done():
                waiters.popleft()
                continue
            if self.used + amount > self.budget:
                return
            waiters.popleft()
            self._take(amount)
            waiter.set_result(None)


class _Reservation:
    __slots__ = ("_amount", "_budget")

    def __init__(self, budget: MemoryBudget, amount: int) -> None:
        self._budget = budget
        self._amount = amount

    async def __aenter__(self) -> None:
        await self._budget._acquire(self._amount)

    async def __aexit__(self, *exc: object) -> None:
        # Synchronous, so a cancelled transfer still gives its bytes back.
        self._budget._release(self._amount)


# -- running together -------------------------------------------------------------------------


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


async def _gather_bounded(
    items: Iterable[T], run: Callable[[T], Awaitable[Any]], width: int
) -> None:
    """Run ``run`` over ``items``, at most ``width`` at a time, as :func:`_gather_all` does.

    Items are taken one by one as workers free up, so a many-part upload keeps ``width``
    coroutines, not one per part, and a part is read just before it is sent.
    """
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await run(item)

    await _gather_all([worker() for _ in range(max(1, width))])

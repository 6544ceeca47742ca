"""``SyncEventStream``: the blocking twin of :class:`~labric.AsyncEventStream`.

The two mirror each other::

    AsyncEventStream (AsyncLabric)                    SyncEventStream (Labric)
    async with client.agent.stream(p) as events:      with client.agent.stream(p) as events:
        async for event in events: ...                    for event in events: ...
    await events.aclose()                             events.close()

A sync stream drives its async twin inside the client's event-loop thread and crosses into it
once per network chunk (:meth:`AsyncEventStream.next_batch`), never per event. Like its twin it
is lazy and single-use: the request goes out when the first event is asked for. Leaving a
``with`` block (or calling :meth:`SyncEventStream.close`) releases the connection at once; a
stream dropped half-read without either is closed by the loop once it is garbage-collected (the
loop's async-generator finaliser runs the close in the loop thread). If the caller is interrupted
while it waits for events (Ctrl-C), the loop-side read is cancelled, which drops the connection.
A stream belongs to the process that created it (not to a forked child).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from labric._blocking.portal import AsyncClient, Portal
from labric._core.eventstream import AsyncEventStream
from labric.errors import UsageError

__all__ = ["SyncEventStream"]

T = TypeVar("T")
C = TypeVar("C", bound=AsyncClient)


class SyncEventStream(Generic[T]):
    """An iterator of typed events from one streamed answer, for the sync client.

    Args:
        portal: The client's portal.
        make: Builds the async stream; called once, in the loop thread (nothing is sent yet).
    """

    def __init__(self, portal: Portal[C], make: Callable[[C], AsyncEventStream[T]]) -> None:
        self._portal: Portal[Any] = portal
        self._stream = portal.call_sync(make)
        self._buffer: collections.deque[T] = collections.deque()

    def __repr__(self) -> str:
        return repr(self._stream).replace("AsyncEventStream", "SyncEventStream", 1)

    @property
    def request_id(self) -> str | None:
        """The server's ``X-Request-ID`` for the stream, once its response has arrived."""
        return self._stream.request_id

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if not self._buffer:
            stream = self._stream
            batch = self._portal.call(lambda _: stream.next_batch())
            if not batch:
                raise StopIteration
            self._buffer.extend(batch)
        return self._buffer.popleft()

    def close(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        self._buffer.clear()
        stream = self._stream
        # UsageError: the client is closed (its loop has dropped the stream) or this runs in the
        # loop thread, during garbage collection.
        with contextlib.suppress(UsageError):
            self._portal.call(lambda _: stream.aclose())

    def __enter__(self) -> SyncEventStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""``AsyncEventStream``: typed events read from one streamed API answer (``text/event-stream``).

Design:

* **Lazy, single-use.** Nothing is sent until the first event is asked for (``async for``, or
  entering ``async with``). The request is sent once (:meth:`Transport.api_stream`): a stream is
  never retried, since the run behind it may have done work the caller has partly seen. A
  non-2xx answer raises its mapped :class:`~labric.errors.APIStatusError` from that first step.
* **Bounded memory.** The body is parsed as it arrives (:class:`~labric._core.sse.SSEDecoder`):
  at most one partial line and one partial event are held, and the events of one network chunk.
* **Typed events.** Each server-sent event goes through ``decode``, which returns the typed event,
  or ``None`` to skip it (the resource logs why), or raises
  :class:`~labric.errors.EventStreamError` for an event it cannot accept.
* **A clear end.** The stream ends after the first *terminal* event (``is_terminal``); the rest
  of the body, if any, is not read and its connection is dropped rather than reused. A body that
  ends (cleanly, by a reset, or by going silent past the read timeout) before a terminal event
  raises :class:`~labric.errors.StreamInterruptedError`.
* **Release.** The response lives inside an async generator. Closing the stream (``aclose()``,
  leaving ``async with``, reaching the end) releases the connection at once; cancelling the task
  that iterates unwinds the generator, which releases it too. A stream dropped half-read (a
  ``break`` out of ``async for`` without ``async with``) is closed by the event loop's
  async-generator finaliser as soon as its last reference goes: the generator holds a
  :class:`_Reader`, never the stream, so no reference cycle waits for the garbage collector.
  ``async with`` (or ``aclose()``) releases it at a point the code names.
* **Batches for the sync facade.** :meth:`AsyncEventStream.next_batch` returns every event the
  next network chunk completes, so :class:`labric._blocking.stream.SyncEventStream` crosses
  into the loop once per chunk, never per event.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, TypeVar

import aiohttp

from labric._core.errormap import TRANSPORT_ERRORS, map_exception
from labric._core.sse import ServerSentEvent, SSEDecoder, SSEFormatError
from labric._core.urls import _safe_path
from labric.errors import APITimeoutError, EventStreamError, StreamInterruptedError

__all__ = ["AsyncEventStream"]

T = TypeVar("T")

_EVENT_STREAM = "text/event-stream"


class AsyncEventStream(Generic[T]):
    """An async iterator of typed events from one streamed answer; see the module docstring.

    Iterate it once with ``async for``; prefer ``async with`` so the connection is released as
    soon as the block is left, even after a ``break``::

        async with client.agent.stream("How many rows has samples?") as events:
            async for event in events:
                print(event)

    Args:
        open_stream: Sends the request and yields its live 2xx response.
        decode: Turns one server-sent event into a typed event, or ``None`` to skip it.
        is_terminal: Whether an event is the stream's last.
        method: The request's method, for errors.
        path: The request's URL or path, for errors (only its path is shown).
        max_event: The most characters one event's data may hold.
    """

    def __init__(
        self,
        open_stream: Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]],
        decode: Callable[[ServerSentEvent], T | None],
        is_terminal: Callable[[T], bool],
        *,
        method: str,
        path: str,
        max_event: int,
    ) -> None:
        self._reader: _Reader[T] = _Reader(
            open_stream, decode, is_terminal, method, _safe_path(path), max_event
        )
        self._batches: AsyncGenerator[list[T], None] | None = None
        self._buffer: collections.deque[T] = collections.deque()
        self._finished = False

    def __repr__(self) -> str:
        state = "finished" if self._finished else "open" if self._batches else "not started"
        reader = self._reader
        return f"<AsyncEventStream {reader.method} {reader.path} {state}>"

    @property
    def request_id(self) -> str | None:
        """The server's ``X-Request-ID`` for the stream, once its response has arrived."""
        return self._reader.request_id

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> AsyncEventStream[T]:
        return self

    async def __anext__(self) -> T:
        if not self._buffer:
            batch = await self.next_batch()
            if not batch:
                raise StopAsyncIteration
            self._buffer.extend(batch)
        return self._buffer.popleft()

    async def next_batch(self) -> list[T]:
        """The next events: those left from the last chunk, else every event the next network
        chunks complete (at least one). An empty list means the stream has ended.

        Raises:
            StreamInterruptedError: the body ended before the terminal event.
            EventStreamError: the answer is not a usable event stream.
            APIStatusError: the server answered with a non-2xx status (on the first call).
        """
        if self._buffer:
            out = list(self._buffer)
            self._buffer.clear()
            return out
        if self._finished:
            return []
        if self._batches is None:
            # The generator holds the reader, never this object: dropping the stream unreferences
            # the generator at once, so the loop's finaliser closes it without a gc cycle.
            self._batches = self._reader.read()
        try:
            return await self._batches.__anext__()
        except StopAsyncIteration:
            self._finished = True
            return []
        except BaseException:
            self._finished = True
            raise

    async def aclose(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        self._finished = True
        self._buffer.clear()
        if self._batches is not None:
            await self._batches.aclose()

    async def __aenter__(self) -> AsyncEventStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Reader(Generic[T]):
    """Reads one stream's events in batches (see :meth:`read`)."""

    def __init__(
        self,
        open_stream: Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]],
        decode: Callable[[ServerSentEvent], T | None],
        is_terminal: Callable[[T], bool],
        method: str,
        path: str,
        max_event: int,
    ) -> None:
        self._open = open_stream
        self._decode = decode
        self._is_terminal = is_terminal
        self.method = method
        self.path = path
        self._max_event = max_event
        self.request_id: str | None = None

    async def read(self) -> AsyncGenerator[list[T], None]:
        """Send the request; yield the events of each chunk, up to the terminal one."""
        async with self._open() as resp:
            self.request_id = resp.headers.get("X-Request-ID")
            decoder = self._decoder(resp)
            while True:
                chunk = await self._chunk(resp)
                if not chunk:
                    break
                try:
                    events = decoder.feed(chunk)
                except SSEFormatError as exc:
                    raise self._format_error(str(exc)) from exc
                batch: list[T] = []
                for raw in events:
                    try:
                        item = self._decode(raw)
                    except EventStreamError as exc:
                        exc.method, exc.path = self.method, self.path
                        exc.request_id = exc.request_id or self.request_id
                        raise
                    if item is None:
                        continue
                    batch.append(item)
                    if self._is_terminal(item):
                        yield batch
                        return
                if batch:
                    yield batch
            try:
                dropped = decoder.close()
            except SSEFormatError as exc:
                raise self._format_error(str(exc)) from exc
            partly = " (in the middle of an event)" if dropped else ""
            raise StreamInterruptedError(
                f"The server closed the event stream before its final event{partly}; streams "
                "are not retried",
                method=self.method,
                path=self.path,
                request_id=self.request_id,
            )

    def _decoder(self, resp: aiohttp.ClientResponse) -> SSEDecoder:
        media = resp.content_type
        if media != _EVENT_STREAM:
            raise self._format_error(
                f"Expected a {_EVENT_STREAM} answer, got {media or 'no Content-Type'}"
            )
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise self._format_error(f"The event stream is encoded ({encoding}); expected none")
        try:
            return SSEDecoder(resp.charset or "utf-8", max_event=self._max_event)
        except SSEFormatError as exc:
            raise self._format_error(str(exc)) from exc

    async def _chunk(self, resp: aiohttp.ClientResponse) -> bytes:
        """The next bytes of the body (``b""`` at its end); wire failures become
        :class:`StreamInterruptedError`."""
        try:
            return await resp.content.readany()
        except TRANSPORT_ERRORS as exc:
            mapped = map_exception(exc, method=self.method, url=self.path)
            why = (
                "went silent past the read timeout"
                if isinstance(mapped, APITimeoutError)
                else f"broke off ({mapped.message})"
            )
            raise StreamInterruptedError(
                f"The event stream {why} before its final event; streams are not retried",
                method=self.method,
                path=self.path,
                request_id=self.request_id,
            ) from exc

    def _format_error(self, message: str) -> EventStreamError:
        return EventStreamError(
            message, method=self.method, path=self.path, request_id=self.request_id
        )

"""``SyncPager``: the blocking twin of :class:`~labric.AsyncPager`, returned by the sync facade.

The two pagers mirror each other::

    AsyncPager (AsyncLabric)                 SyncPager (Labric)
    first = await client.files.list()        first = client.files.list().first_page()
    async for f in client.files.list(): ...  for f in client.files.list(): ...
    async for page in pager.pages(): ...     for page in pager.pages(): ...
    items = await pager.to_list()            items = pager.to_list()

A sync pager drives the async pager inside the client's event-loop thread and crosses into it once
per page, never per item; the async pager keeps prefetching the next page while the caller works
through the current one. Like the async pager it is lazy and re-iterable: each iteration starts
again from the first page. Leaving a loop early (``break``, an exception) closes the page stream,
which cancels the prefetch. A pager belongs to the process that created it (not to a forked child).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from labric._blocking.portal import AsyncClient, Portal
from labric._core.pagination import AsyncPager, Page
from labric.errors import UsageError

__all__ = ["SyncPager"]

T = TypeVar("T")
C = TypeVar("C", bound=AsyncClient)


class _PageStream(Protocol[T]):
    """What ``AsyncPager.pages()`` returns: an async iterator of pages that can be closed."""

    def __anext__(self) -> Awaitable[Page[T]]: ...

    async def aclose(self) -> None: ...


async def _next_page(pages: _PageStream[T]) -> Page[T] | None:
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None


class SyncPager(Generic[T]):
    """A lazy, re-iterable listing over all pages, for the sync client.

    Iterate it for every item (across pages), call :meth:`first_page` for the first page only, or
    iterate :meth:`pages` for one :class:`~labric.Page` at a time.

    Args:
        portal: The client's portal.
        make: Builds the async pager; called once, in the loop thread (so argument errors such as
            ``limit=0`` are raised by the method that returned this pager).
    """

    def __init__(self, portal: Portal[C], make: Callable[[C], AsyncPager[T]]) -> None:
        self._portal: Portal[Any] = portal
        self._pager = portal.call_sync(make)

    def __repr__(self) -> str:
        return f"<SyncPager {self._pager._state()}>"

    def first_page(self) -> Page[T]:
        """Fetch the first page only (the sync form of ``await pager``)."""
        pager = self._pager
        return self._portal.call(lambda _: pager)

    def pages(self) -> Iterator[Page[T]]:
        """Yield each page, fetching the next while the caller works on the current one."""
        stream: _PageStream[T] = self._pager.pages()
        exhausted = False
        try:
            while not exhausted:
                page = self._portal.call(lambda _: _next_page(stream))
                if page is None:
                    exhausted = True
                    return
                # No next link: this is the last page, so skip the crossing that would say so.
                exhausted = not page.has_next
                yield page
        finally:
            if not exhausted:
                self._close_stream(stream)

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def to_list(self) -> list[T]:
        """Collect every item into a list."""
        return [item for item in self]

    def _close_stream(self, stream: _PageStream[T]) -> None:
        # UsageError: the client is closed (its loop has dropped the stream) or this runs in the
        # loop thread, during garbage collection (the stream cancels its own prefetch then).
        with contextlib.suppress(UsageError):
            self._portal.call(lambda _: stream.aclose())

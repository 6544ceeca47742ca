"""``AsyncPager``: one listing, however many pages it spans.

A pager is returned (not awaited) by every ``list``-style method::

    first = await client.files.list()          # the first page (a Page, a sequence of items)
    async for f in client.files.list():        # every item, across all pages
        ...
    async for page in client.files.list().pages():
        ...

Pages are chained by the server's ``Link: <...>; rel="next"`` header (design.md 3.1). While the
caller consumes one page, the next one is already being fetched in a task: at most one page ahead,
never more, so memory stays bounded by two pages. ``limit`` caps the total number of items yielded;
once it is reached no further page is requested.

Leaving early is clean. The iterators are plain objects, not async generators, so breaking out of
``async for`` drops the last reference to the iterator and its finalizer cancels the prefetch at
once (an async generator would only be finalized later, by the loop). ``aclose()`` does the same and
waits for the cancelled fetch to finish. A prefetch's failure is raised when the caller asks for
that page; if the caller stops before that page, the failure is dropped without a report.

A pager is lazy and can be iterated more than once; each iteration starts again from the first page.
A server that misbehaves cannot make a pager spin: each of these ends the iteration with
:class:`~labric.errors.APIResponseValidationError` rather than looping forever:

* a ``next`` link the pager has already followed in this iteration (a loop);
* more than :data:`MAX_EMPTY_PAGES` empty pages in a row that still link to a next page;
* (in the resources) a ``next`` link to another origin, which would be sent the API key, or one
  that does not parse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

import attrs

from labric.errors import APIResponseValidationError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_EMPTY_PAGES",
    "AsyncPager",
    "ItemIterator",
    "Page",
    "PageFetcher",
    "PageIterator",
]

T = TypeVar("T")

#: Empty pages in a row, each linking to another page, a listing may serve before the pager gives
#: up: an honest server has no reason to send more than one or two (a page emptied by deletes).
MAX_EMPTY_PAGES = 3

#: Items per request when the caller names no ``page_size``. Every listing request carries one:
#: a server that pages (ours) answers a request without it with every match at once (design.md
#: 3.1), which a pager has no reason to ask for.
DEFAULT_PAGE_SIZE = 100


@attrs.frozen
class Page(Sequence[T]):
    """One page of a listing: a sequence of items plus the link to the next page."""

    items: list[T]
    next_url: str | None = attrs.field(default=None, repr=False)

    @property
    def has_next(self) -> bool:
        """Whether the server said there is another page."""
        return self.next_url is not None

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


#: Fetches one page: ``None`` for the first page, else the absolute ``next`` URL.
PageFetcher = Callable[[str | None], Awaitable[Page[T]]]


def _consume_result(task: asyncio.Task[Any]) -> None:
    # Mark a prefetch's exception as retrieved: if the caller never asks for that page (it broke
    # out early), the failure is moot and must not be logged as "never retrieved".
    if not task.cancelled():
        task.exception()


class PageIterator(AsyncIterator[Page[T]]):
    """Iterates the pages of one listing, prefetching at most one page ahead.

    Returned by :meth:`AsyncPager.pages`. Empty pages in the middle of a listing are skipped, up to
    :data:`MAX_EMPTY_PAGES` in a row.
    """

    def __init__(
        self,
        fetch: PageFetcher[T],
        limit: int | None,
        on_page: Callable[[Page[T]], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._on_page = on_page
        self._remaining = limit
        self._started = False
        self._finished = False
        self._pending: asyncio.Task[Page[T]] | None = None
        self._followed: set[str] = set()
        self._empty_run = 0

    def __aiter__(self) -> PageIterator[T]:
        return self

    async def __anext__(self) -> Page[T]:
        while True:
            if self._finished:
                raise StopAsyncIteration
            try:
                if not self._started:
                    self._started = True
                    page = await self._fetch(None)
                elif self._pending is not None:
                    page = await self._pending
                    self._pending = None
                else:
                    raise StopAsyncIteration
            except BaseException:
                # A failed (or cancelled) page ends the iteration; drop a prefetch still running.
                self._finished = True
                self._cancel_pending()
                raise
            if self._remaining is not None and len(page.items) >= self._remaining:
                # The limit is reached within this page: no further request.
                self._finished = True
                return self._returned(Page(page.items[: self._remaining], None))
            if self._remaining is not None:
                self._remaining -= len(page.items)
            self._empty_run = 0 if page.items else self._empty_run + 1
            if page.next_url is not None:
                if self._empty_run > MAX_EMPTY_PAGES:
                    self._finished = True
                    raise APIResponseValidationError(
                        f"The server sent {self._empty_run} empty pages in a row, each linking to "
                        "another; stopping instead of following its links forever"
                    )
                self._pending = self._prefetch(page.next_url)
            if page.items or self._pending is None:
                return self._returned(page)

    def _returned(self, page: Page[T]) -> Page[T]:
        if self._on_page is not None:
            self._on_page(page)
        return page

    def _prefetch(self, url: str) -> asyncio.Task[Page[T]]:
        if url in self._followed:
            coro: Awaitable[Page[T]] = _refuse_loop()
        else:
            self._followed.add(url)
            coro = self._fetch(url)
        task: asyncio.Task[Page[T]] = asyncio.ensure_future(coro)
        task.add_done_callback(_consume_result)
        return task

    def _cancel_pending(self) -> asyncio.Task[Page[T]] | None:
        task, self._pending = self._pending, None
        if task is not None and not task.done():
            task.cancel()
        return task

    async def aclose(self) -> None:
        """Stop iterating: cancel the prefetch, if any, and wait until it has finished."""
        self._finished = True
        task = self._cancel_pending()
        if task is not None:
            # asyncio.wait neither raises the task's error nor swallows our own cancellation.
            await asyncio.wait([task])

    def __del__(self) -> None:
        # Dropped without aclose() (a ``break`` out of ``async for``): cancel the prefetch now.
        task = self._pending
        if task is None or task.done():
            return
        loop = task.get_loop()
        if loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task.cancel()
        else:  # finalized from another thread: cancel in the task's own loop
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)


async def _refuse_loop() -> Page[Any]:
    raise APIResponseValidationError(
        "The server's next-page link repeats a page already fetched; stopping instead of looping"
    )


class ItemIterator(AsyncIterator[T]):
    """Iterates every item of a listing, page by page. Returned by ``aiter(pager)``."""

    def __init__(self, pages: PageIterator[T]) -> None:
        self._pages = pages
        self._items: Iterator[T] = iter(())

    def __aiter__(self) -> ItemIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            for item in self._items:
                return item
            page = await self._pages.__anext__()
            self._items = iter(page.items)

    async def aclose(self) -> None:
        """Stop iterating: cancel the prefetch, if any, and wait until it has finished."""
        self._items = iter(())
        await self._pages.aclose()


class AsyncPager(Generic[T]):
    """A lazy, re-iterable listing over all pages.

    Args:
        fetch: Fetches the first page (argument ``None``) or the page at a ``next`` URL.
        limit: The most items to yield in total (``None``: all).
    """

    def __init__(
        self, fetch: PageFetcher[T], *, limit: int | None = None, route: str | None = None
    ) -> None:
        self._limit = limit
        self._route = route
        # What the repr reports, over every iteration of this pager.
        self._pages_fetched = 0
        self._items_yielded = 0
        self._exhausted = False

        async def counted(next_url: str | None) -> Page[T]:
            page = await fetch(next_url)
            self._pages_fetched += 1
            return page

        self._fetch: PageFetcher[T] = counted

    def _yielded(self, page: Page[T]) -> None:
        self._items_yielded += len(page.items)
        if page.next_url is None:
            self._exhausted = True

    def _state(self) -> str:
        """What the pager lists and how far it has gone, for the reprs."""
        what = self._route or "a listing"
        if not self._pages_fetched:
            progress = "not fetched yet"
        else:
            end = "exhausted" if self._exhausted else "more to fetch"
            pages = "page" if self._pages_fetched == 1 else "pages"
            items = "item" if self._items_yielded == 1 else "items"
            progress = (
                f"{self._pages_fetched} {pages} fetched, {self._items_yielded} {items} "
                f"yielded, {end}"
            )
        return f"{what} limit={self._limit}: {progress}"

    def __repr__(self) -> str:
        return f"<AsyncPager {self._state()}>"

    def __await__(self) -> Generator[Any, None, Page[T]]:
        return self._first_page().__await__()

    async def _first_page(self) -> Page[T]:
        page = await self._fetch(None)
        if self._limit is not None and len(page.items) >= self._limit:
            page = Page(page.items[: self._limit], None)
        self._yielded(page)
        return page

    def pages(self) -> PageIterator[T]:
        """Iterate page by page (``async for page in pager.pages()``), one page prefetched."""
        return PageIterator(self._fetch, self._limit, self._yielded)

    def __aiter__(self) -> ItemIterator[T]:
        return ItemIterator(self.pages())

    async def to_list(self) -> list[T]:
        """Collect every item into a list."""
        return [item async for item in self]

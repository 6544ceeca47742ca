"""``AsyncPager``: one listing, however many pages it spans.

A pager is returned (not awaited) by every ``list``-style method::

    first = await client.files.list()          # the first page (a Page, a sequence of items)
    async for f in client.files.list():        # every item, across all pages
        ...
    async for page in client.files.list().pages():
        ...

Pages are chained by the server's ``Link: <...>; rel="next"`` header (design.md 3.1). While the
caller consumes one page, the next one is already being fetched (at most one page ahead). Leaving
the loop early cancels that prefetch. ``limit`` caps the total number of items yielded.

A pager is lazy and can be iterated more than once; each iteration starts again from the first page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
from typing import Any, Generic, TypeVar, overload

import attrs

__all__ = ["AsyncPager", "Page", "PageFetcher"]

T = TypeVar("T")


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


class AsyncPager(Generic[T]):
    """A lazy, re-iterable listing over all pages.

    Args:
        fetch: Fetches the first page (argument ``None``) or the page at a ``next`` URL.
        limit: The most items to yield in total (``None``: all).
    """

    def __init__(self, fetch: PageFetcher[T], *, limit: int | None = None) -> None:
        self._fetch = fetch
        self._limit = limit

    def __repr__(self) -> str:
        return f"<AsyncPager limit={self._limit}>"

    def __await__(self) -> Generator[Any, None, Page[T]]:
        return self._first_page().__await__()

    async def _first_page(self) -> Page[T]:
        page = await self._fetch(None)
        if self._limit is not None and len(page.items) >= self._limit:
            return Page(page.items[: self._limit], None)
        return page

    async def pages(self) -> AsyncGenerator[Page[T], None]:
        """Yield each page, fetching the next while the caller works on the current one."""
        remaining = self._limit
        pending: asyncio.Task[Page[T]] | None = asyncio.ensure_future(self._fetch(None))
        try:
            while pending is not None:
                page = await pending
                pending = None
                if remaining is not None and len(page.items) >= remaining:
                    yield Page(page.items[:remaining], None)
                    return
                if page.next_url is not None:
                    pending = asyncio.ensure_future(self._fetch(page.next_url))
                if remaining is not None:
                    remaining -= len(page.items)
                if page.items or pending is None:
                    yield page
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

    async def __aiter__(self) -> AsyncGenerator[T, None]:
        pages = self.pages()
        try:
            async for page in pages:
                for item in page.items:
                    yield item
        finally:
            await pages.aclose()

    async def to_list(self) -> list[T]:
        """Collect every item into a list."""
        return [item async for item in self]

"""How the listings answer: paged with a ``Link`` header, or every match as one streamed array.

The rule (design.md 3.1): a list request that carries ``page_size`` or ``cursor`` is *paged*: one
page of at most ``page_size`` items (the server's default when absent, capped by its maximum),
and a ``Link: <...>; rel="next"`` header while more items exist. A request with neither gets the
hosted answer: every match up to ``limit`` (all of them when absent) as one JSON array, no
``Link``, so a client that does not page (the official one) never gets a silently truncated list.
In both forms ``limit`` keeps its hosted meaning, the most items in total: a paged answer's
``Link`` carries the ``limit`` still left, and no link is sent once it is spent.

Every listing reads its rows by keyset: ``fetch(after, n)`` returns up to ``n`` items following
the position ``after`` (``None``: from the start), each with its own position. Stores implement it
as an index seek (``(created_at, seq) < (?, ?)`` over an index ending in ``created_at, seq``), so
every page costs the same whatever its depth. The unpaged answer is written to the client in
batches of :attr:`~labric.server.core.state.Settings.max_page_size` as they are read, never built
whole in memory; aiohttp's write applies the client's back-pressure between batches.

Positions are ``(created_at, seq)`` pairs (:func:`encode_cursor`) or, for dataset rows, rowids;
the cursor on the wire is opaque either way.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import attrs
from aiohttp import web

from labric.server.core.http import Fields, HTTPError
from labric.server.core.state import ServerState

__all__ = [
    "Fetch",
    "Listing",
    "decode_cursor",
    "encode_cursor",
    "listing",
    "positioned_listing",
    "respond",
]

logger = logging.getLogger(__name__)

P = TypeVar("P")

#: Reads up to ``n`` items after a position: ``[(position, JSON-ready item), ...]``, in order.
Fetch = Callable[[P | None, int], Awaitable[list[tuple[P, Any]]]]

_INVALID_CURSOR = "Invalid cursor: pass back the one from the previous page's Link header"


def encode_cursor(created_at: str, seq: int) -> str:
    """An opaque cursor for ``(created_at, seq)`` listings."""
    raw = json.dumps([created_at, seq], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The position an :func:`encode_cursor` cursor names (400 when it is not one)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, seq = json.loads(raw)
        # SQLite integers have 64 bits: a larger one would fail the query, not the cursor.
        if isinstance(created_at, str) and isinstance(seq, int) and -(2**63) <= seq < 2**63:
            return created_at, seq
    except (ValueError, TypeError, binascii.Error):
        pass
    raise HTTPError(400, _INVALID_CURSOR)


def _encode_position(position: tuple[str, int]) -> str:
    return encode_cursor(*position)


@attrs.frozen
class Listing(Generic[P]):
    """What one list request asks for.

    Attributes:
        paged: The request carried ``page_size`` or ``cursor``: answer one page and a ``Link``.
        limit: The most items in total (``None``: every match).
        page_size: Items per page (paged), or per read batch (streamed).
        after: Where the answer starts (``None``: the newest item).
        encode: Turns a position into the cursor of the page after it.
    """

    paged: bool
    limit: int | None
    page_size: int
    after: P | None
    encode: Callable[[P], str] = attrs.field(repr=False)


def listing(state: ServerState, *sources: Fields) -> Listing[tuple[str, int]]:
    """Read ``limit``, ``page_size`` and ``cursor`` of a ``(created_at, seq)`` listing.

    See :func:`positioned_listing`.
    """
    return positioned_listing(state, *sources, decode=decode_cursor, encode=_encode_position)


def positioned_listing(
    state: ServerState,
    *sources: Fields,
    decode: Callable[[str], P],
    encode: Callable[[P], str],
    cursor_length: int = 1024,
) -> Listing[P]:
    """Read ``limit``, ``page_size`` and ``cursor`` of a list request.

    Each is taken from the first of ``sources`` that has it (the query before a JSON body, for a
    POST listing whose next-page link carries them in its query). Call before the sources'
    ``check()``: an invalid cursor raises 400 once they are checked.

    Args:
        state: The server's state (page sizes).
        sources: Where the fields are read from, in order of precedence.
        decode: Turns the cursor into a position (400 when it is not one).
        encode: Turns a position into a cursor.
        cursor_length: The longest cursor accepted.
    """
    limit = page_size = cursor = None
    for f in sources:
        limit = limit or f.integer("limit", minimum=1)
        page_size = page_size or f.integer("page_size", minimum=1)
        # An empty cursor still asks for pages: the first one.
        cursor = cursor or f.string("cursor", max_length=cursor_length)
    for f in sources:
        f.check()
    paged = page_size is not None or cursor is not None
    most = state.settings.max_page_size
    size = min(page_size or state.settings.default_page_size, most) if paged else most
    return Listing(
        paged=paged,
        limit=limit,
        page_size=min(size, limit) if limit is not None else size,
        after=decode(cursor) if cursor else None,
        encode=encode,
    )


async def respond(request: web.Request, wanted: Listing[P], fetch: Fetch[P]) -> web.StreamResponse:
    """Answer a list request: one page and its ``Link`` (paged), or every match, streamed.

    Args:
        request: The list request (its URL is the base of the next page's link).
        wanted: What it asks for (:func:`listing`).
        fetch: Reads items after a position (see :data:`Fetch`).
    """
    if wanted.paged:
        return await _page(request, wanted, fetch)
    return await _stream(request, wanted, fetch)


async def _page(request: web.Request, wanted: Listing[P], fetch: Fetch[P]) -> web.Response:
    size = wanted.page_size
    rows = await fetch(wanted.after, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    left = None if wanted.limit is None else wanted.limit - len(rows)
    headers: dict[str, str] = {}
    if more and rows and (left is None or left > 0):
        query: dict[str, str] = {"cursor": wanted.encode(rows[-1][0])}
        if left is not None:
            query["limit"] = str(left)
        headers["Link"] = f'<{request.url.update_query(query)}>; rel="next"'
    return web.Response(
        body=_encode([item for _, item in rows], "[", "]"),
        content_type="application/json",
        headers=headers,
    )


def _encode(items: list[Any], opening: str, closing: str) -> bytes:
    inner = ",".join(json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in items)
    return (opening + inner + closing).encode()


async def _stream(request: web.Request, wanted: Listing[P], fetch: Fetch[P]) -> web.StreamResponse:
    left = wanted.limit
    asked = wanted.page_size if left is None else min(wanted.page_size, left)
    # The first batch is read before anything is sent, so a failing read still gets a JSON error.
    rows = await fetch(wanted.after, asked)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    opening = "["
    try:
        while rows:
            await response.write(_encode([item for _, item in rows], opening, ""))
            opening = ","
            if left is not None:
                left -= len(rows)
            if len(rows) < asked or left == 0:
                break
            asked = wanted.page_size if left is None else min(wanted.page_size, left)
            rows = await fetch(rows[-1][0], asked)
    except Exception:
        # The status line is sent: the only honest signal left is a truncated body (invalid JSON),
        # never a shorter array that looks complete.
        logger.exception("Listing %s failed while streaming; closing the connection", request.path)
        if request.transport is not None:
            request.transport.close()
        raise
    await response.write(b"[]" if opening == "[" else b"]")
    await response.write_eof()
    return response

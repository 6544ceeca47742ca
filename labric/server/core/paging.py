"""Cursor pagination the listings share: opaque ``(created_at, rowid)`` cursors, page sizes
and the ``Link`` header naming the next page."""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web

from labric.server.core.http import HTTPError
from labric.server.core.state import ServerState

__all__ = ["decode_cursor", "encode_cursor", "next_link", "page_size"]


def encode_cursor(created_at: str, rowid: int) -> str:
    """An opaque cursor for ``(created_at, rowid)`` listings."""
    raw = json.dumps([created_at, rowid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """The position an :func:`encode_cursor` cursor names (400 when it is not one)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, rowid = json.loads(raw)
        # SQLite integers have 64 bits: a larger one would fail the query, not the cursor.
        if isinstance(created_at, str) and isinstance(rowid, int) and -(2**63) <= rowid < 2**63:
            return created_at, rowid
    except (ValueError, TypeError, binascii.Error):
        pass
    raise HTTPError(400, "Invalid cursor: pass back the one from the previous page's Link header")


def page_size(state: ServerState, limit: int | None) -> int:
    """Items per page for a listing's ``limit``."""
    return min(limit or state.settings.default_page_size, state.settings.max_page_size)


def next_link(request: web.Request, cursor: str) -> dict[str, str]:
    """The ``Link`` header pointing at the next page."""
    return {"Link": f'<{request.url.update_query({"cursor": cursor})}>; rel="next"'}

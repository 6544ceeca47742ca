"""Request fields the record routes (instruments, experiments) share: times, JSON objects,
query booleans, pages."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from labric.server.core.db import iso
from labric.server.core.http import Fields
from labric.server.core.paging import decode_cursor, encode_cursor
from labric.server.core.state import ServerState

__all__ = [
    "MAX_METADATA_BYTES",
    "json_object",
    "next_link",
    "page",
    "parse_time",
    "query_boolean",
    "stored_time",
    "time_field",
]

#: The largest ``metadata`` object accepted, encoded as compact JSON.
MAX_METADATA_BYTES = 64 * 1024


def parse_time(text: str) -> float | None:
    """An ISO 8601 time as a Unix timestamp (naive times are UTC); ``None`` if it is not one."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    timestamp = parsed.timestamp()
    try:
        datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59-05:00 is in the year 10000 UTC
        return None
    return timestamp


def time_field(f: Fields, name: str) -> float | None:
    """An ISO 8601 field of a body or query (``None`` when absent; a problem when invalid)."""
    text = f.string(name, max_length=64)
    if text is None:
        return None
    value = parse_time(text)
    if value is None:
        f.add([name], "Input should be an ISO 8601 datetime", "datetime_parsing")
    return value


def stored_time(f: Fields, name: str) -> str | None:
    """Like :func:`time_field`, in the stored ISO form."""
    value = time_field(f, name)
    return None if value is None else iso(value)


def json_object(f: Fields, data: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """A JSON object field of at most :data:`MAX_METADATA_BYTES` (``None`` when absent)."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        f.add([name], "Input should be a valid dictionary", "dict_type")
        return None
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        f.add([name], f"Must be at most {MAX_METADATA_BYTES} bytes as JSON", "too_long")
        return None
    return value


def query_boolean(f: Fields, query: Mapping[str, str], name: str) -> bool | None:
    """A ``true``/``false`` query parameter (``1``/``0`` too)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    value = {"true": True, "1": True, "false": False, "0": False}.get(raw.strip().lower())
    if value is None:
        f.add([name], "Input should be a valid boolean", "bool_parsing")
    return value


def page(state: ServerState, f: Fields) -> tuple[int, tuple[str, int] | None]:
    """Read ``limit`` and ``cursor`` of a listing: ``(page size, position after)``.

    Call before ``f.check()``; an invalid cursor raises 400 once the fields are checked.
    """
    limit = f.integer("limit", minimum=1)
    cursor = f.string("cursor", max_length=1024) or None
    f.check()
    size = min(limit or state.settings.default_page_size, state.settings.max_page_size)
    return size, decode_cursor(cursor) if cursor else None


def next_link(request: web.Request, created_at: str, rowid: int) -> dict[str, str]:
    """The ``Link`` header pointing at the page after ``(created_at, rowid)``."""
    cursor = encode_cursor(created_at, rowid)
    return {"Link": f'<{request.url.update_query({"cursor": cursor})}>; rel="next"'}

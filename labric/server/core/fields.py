"""Request fields the record routes (instruments, experiments) share: times, JSON objects,
query booleans."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labric.server.core.db import iso
from labric.server.core.http import Fields

__all__ = [
    "MAX_METADATA_BYTES",
    "json_object",
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

"""Notifications on the local server: the inbox rows and the per-organisation mute setting.

Functions run on the database thread inside the caller's transaction (``conn`` first), like
:mod:`labric.server.core.records`; :func:`send` is one transaction, so the dedupe check, the mute
setting, the rate caps and the insert see one state even when sends race.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from typing import Any

import attrs

from labric.server.core.db import from_iso, iso

__all__ = [
    "Capped",
    "NotificationRecord",
    "list_notifications",
    "muted",
    "send",
    "set_muted",
]

_HOUR = 60 * 60
_DAY = 24 * _HOUR


@attrs.frozen(kw_only=True)
class NotificationRecord:
    """An inbox row (``rowid`` orders those sharing a ``created_at``, for cursors)."""

    rowid: int
    id: str
    org_id: str
    title: str
    body: str | None
    action_url: str | None
    data: dict[str, Any]
    dedupe_key: str
    api_key_id: str | None
    created_at: str


@attrs.frozen
class Capped:
    """A send refused by a rate cap: which one, and seconds until a slot frees."""

    cap: str
    limit: int
    retry_after: int


def _record(row: sqlite3.Row) -> NotificationRecord:
    return NotificationRecord(
        rowid=row["rowid"],
        id=row["id"],
        org_id=row["org_id"],
        title=row["title"],
        body=row["body"],
        action_url=row["action_url"],
        data=json.loads(row["data"]),
        dedupe_key=row["dedupe_key"],
        api_key_id=row["api_key_id"],
        created_at=row["created_at"],
    )


def muted(conn: sqlite3.Connection, org_id: str) -> bool:
    """Whether the organisation's sends are muted."""
    row = conn.execute(
        "SELECT muted FROM notification_settings WHERE org_id = ?", (org_id,)
    ).fetchone()
    return bool(row and row["muted"])


def set_muted(conn: sqlite3.Connection, org_id: str, value: bool) -> None:
    """Mute or unmute the organisation's sends."""
    conn.execute(
        "INSERT INTO notification_settings (org_id, muted) VALUES (?, ?) "
        "ON CONFLICT (org_id) DO UPDATE SET muted = excluded.muted",
        (org_id, int(value)),
    )


def _capped(
    conn: sqlite3.Connection, org_id: str, now: float, window: float, limit: int
) -> int | None:
    """Seconds until the window holds fewer than ``limit`` sends, or ``None`` if it does now.

    The window slides: a slot frees when the send that filled it is ``window`` seconds old, so
    the wait is for the oldest send that has to leave before one more fits.
    """
    rows = conn.execute(
        "SELECT created_at FROM notifications WHERE org_id = ? AND created_at > ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT 1 OFFSET ?",
        (org_id, iso(now - window), limit - 1),
    ).fetchone()
    if rows is None:
        return None
    return max(1, math.ceil(from_iso(rows["created_at"]) + window - now))


def send(
    conn: sqlite3.Connection,
    org_id: str,
    notification_id: str,
    fields: Mapping[str, Any],
    *,
    api_key_id: str,
    now: float,
    per_hour: int,
    per_day: int,
) -> tuple[str, str | None] | Capped:
    """Deliver a notification to the organisation's inbox, unless it is a repeat or muted.

    Args:
        fields: ``title``, ``dedupe_key``, ``body``, ``action_url`` and ``data`` (already
            checked; ``data`` without the reserved keys).

    Returns:
        ``(status, id)``: ``("delivered", id)``, ``("deduplicated", None)`` or
        ``("muted", None)``; or :class:`Capped` when a rate cap is reached (nothing stored).
        A repeat or a muted send stores nothing and costs no slot of the caps.
    """
    seen = conn.execute(
        "SELECT 1 FROM notifications WHERE org_id = ? AND dedupe_key = ?",
        (org_id, fields["dedupe_key"]),
    ).fetchone()
    if seen is not None:
        return "deduplicated", None
    if muted(conn, org_id):
        return "muted", None
    waits = [
        Capped(name, limit, wait)
        for name, window, limit in (("hour", _HOUR, per_hour), ("day", _DAY, per_day))
        if (wait := _capped(conn, org_id, now, window, limit)) is not None
    ]
    if waits:
        return max(waits, key=lambda c: c.retry_after)
    data = {**fields.get("data", {}), "api_key_id": api_key_id}
    conn.execute(
        "INSERT INTO notifications (id, org_id, title, body, action_url, data, dedupe_key, "
        "api_key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            notification_id,
            org_id,
            fields["title"],
            fields.get("body"),
            fields.get("action_url"),
            json.dumps(data, separators=(",", ":"), ensure_ascii=False),
            fields["dedupe_key"],
            api_key_id,
            iso(now),
        ),
    )
    return "delivered", notification_id


def list_notifications(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    after: tuple[str, int] | None,
    limit: int,
) -> list[NotificationRecord]:
    """The organisation's inbox, newest first, after a ``(created_at, rowid)`` cursor."""
    where = ["org_id = ?"]
    params: list[Any] = [org_id]
    if after is not None:
        # Row values seek in the (org_id, created_at) index, whose entries end in the rowid.
        where.append("(created_at, rowid) < (?, ?)")
        params += [after[0], after[1]]
    sql = (
        f"SELECT rowid, * FROM notifications WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?"
    )
    return [_record(row) for row in conn.execute(sql, [*params, limit])]

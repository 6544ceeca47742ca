"""Instruments on the local server: records, pairing codes and device-status periods.

Every function runs on the database thread inside the transaction :meth:`Database.run` opened
(``conn`` first), like :mod:`labric.server.core.records`; nothing here knows about HTTP.

Pairing
    Creating an instrument (or asking for a new code) stores a one-time pairing code, of which
    only the SHA-256 is kept. A device exchanges the code, once and before it expires, for its own
    ``write``-scoped key in the instrument's organisation; the key row names the instrument, so the
    device's uploads default to it and the key goes when the instrument is deleted. Pairing again
    replaces the device: the instrument's earlier device keys are revoked. An exchange that spent
    a code records a hash of its ``Idempotency-Key``; the same exchange repeated (a retry after a
    lost answer) gets a fresh key and the one issued first is revoked, so a retry never locks a
    device out while a second party holding the code still cannot use it; once another device has
    paired, the old exchange can no longer be repeated.

Device status: the report stream
    A device reports ``online``, ``offline`` or ``error`` (with its app version and whether it is
    watching a folder) when its state changes and at least every :data:`HEARTBEAT_INTERVAL`
    seconds while it runs. Reports are stamped with the server's clock (devices' clocks drift). A
    silence longer than :data:`OFFLINE_AFTER` seconds (three missed heartbeats) is a *gap*, and a
    gap counts as offline: from the last report before it until the next report.

    Reports are folded into periods as they arrive (``device_periods``), so a history never scans
    raw heartbeats: a report with the same status, app version and watching flag as the current
    period extends it (``last_seen``); anything else starts a new period. A gap is stored as an
    offline period covering it; offline periods (reported or from a gap) absorb later offline
    reports and last until the next report of another status. At read time the latest period is
    extended to *now*: an offline one lasts until now, and a device silent for longer than
    :data:`OFFLINE_AFTER` gets a trailing offline period from its last report to now.

    A history is the periods overlapping a window, oldest first, clipped to it, at most
    :data:`MAX_PERIODS` (the most recent kept). A period of one report is an instant and is kept
    when it falls inside the window; longer periods are kept when they overlap it for a positive
    time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from typing import Any

import attrs

from labric.server.core import auth, records
from labric.server.core.db import from_iso, iso

__all__ = [
    "DEVICE_STATUSES",
    "HEARTBEAT_INTERVAL",
    "MAX_PERIODS",
    "OFFLINE_AFTER",
    "PAIRING_TTL",
    "Current",
    "Deleted",
    "History",
    "InstrumentRecord",
    "Pairing",
    "Period",
    "Redeemed",
    "current_status",
    "delete_instrument",
    "get_instrument",
    "history",
    "insert_instrument",
    "issue_pairing_code",
    "list_instruments",
    "redeem_pairing_code",
    "report_status",
    "update_instrument",
]

#: The statuses a device reports (hosted ``DeviceStatusType``).
DEVICE_STATUSES = ("online", "offline", "error")
#: Seconds between a running device's reports (at most).
HEARTBEAT_INTERVAL = 60.0
#: Seconds of silence after which a device counts as offline (three missed heartbeats).
OFFLINE_AFTER = 3 * HEARTBEAT_INTERVAL
#: The most periods one history returns (hosted).
MAX_PERIODS = 200
#: Seconds a pairing code stays valid.
PAIRING_TTL = 60 * 60.0
#: Crockford's base32 alphabet: no I, L, O or U, so a code read aloud or typed is unambiguous.
_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_LENGTH = 12  # 60 bits


# -- records -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class InstrumentRecord:
    """An instrument with a summary of its device's latest report.

    Attributes:
        rowid: Orders instruments that share a ``created_at`` (for cursors).
        status: The device's current status (``None``: it never reported).
        last_seen_at: When the device last reported.
        app_version: The app version of its latest report that named one.
    """

    rowid: int
    id: str
    org_id: str
    name: str
    description: str | None
    metadata: dict[str, Any] | None
    created_at: str
    updated_at: str | None
    paired_at: str | None
    status: str | None
    last_seen_at: str | None
    app_version: str | None


_SELECT = """
SELECT i.rowid AS rowid, i.*,
    p.status AS p_status, p.last_seen AS p_last_seen,
    (SELECT app_version FROM device_periods v WHERE v.instrument_id = i.id
        AND v.app_version IS NOT NULL ORDER BY v.last_seen DESC, v.id DESC LIMIT 1)
        AS p_app_version
FROM instruments i
LEFT JOIN device_periods p ON p.id = (
    SELECT id FROM device_periods WHERE instrument_id = i.id
    ORDER BY last_seen DESC, id DESC LIMIT 1)
"""
# An instrument's periods are appended in time order and only the latest one grows, so
# (last_seen, id) orders them exactly as id does, and walks the (instrument_id, last_seen) index.


def _record(row: sqlite3.Row, now: float) -> InstrumentRecord:
    status = row["p_status"]
    last_seen = row["p_last_seen"]
    if status is not None and status != "offline" and now - from_iso(last_seen) > OFFLINE_AFTER:
        status = "offline"
    return InstrumentRecord(
        rowid=row["rowid"],
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        description=row["description"],
        metadata=json.loads(row["metadata"]) if row["metadata"] is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        paired_at=row["paired_at"],
        status=status,
        last_seen_at=last_seen,
        app_version=row["p_app_version"],
    )


def insert_instrument(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    name: str,
    description: str | None,
    metadata: dict[str, Any] | None,
    now: str,
) -> str:
    """Create an instrument; return its id."""
    instrument_id = records.insert_instrument(conn, org_id, name, now)
    conn.execute(
        "UPDATE instruments SET description = ?, metadata = ?, updated_at = ? WHERE id = ?",
        (description, _dumps(metadata), now, instrument_id),
    )
    return instrument_id


def get_instrument(
    conn: sqlite3.Connection, org_id: str, instrument_id: str, now: float
) -> InstrumentRecord | None:
    """The organisation's instrument ``instrument_id``."""
    row = conn.execute(_SELECT + " WHERE i.id = ? AND i.org_id = ?", (instrument_id, org_id))
    found = row.fetchone()
    return _record(found, now) if found else None


def list_instruments(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    after: tuple[str, int] | None,
    limit: int,
    now: float,
) -> list[InstrumentRecord]:
    """The organisation's instruments, newest first, after a ``(created_at, rowid)`` cursor."""
    where = ["i.org_id = ?"]
    params: list[Any] = [org_id]
    if after is not None:
        where.append("(i.created_at, i.rowid) < (?, ?)")
        params += [after[0], after[1]]
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY i.created_at DESC, i.rowid DESC LIMIT ?"
    return [_record(row, now) for row in conn.execute(sql, [*params, limit])]


def update_instrument(
    conn: sqlite3.Connection, instrument_id: str, changes: dict[str, Any]
) -> None:
    """Set ``name``, ``description``, ``metadata`` and/or ``updated_at`` of an instrument."""
    allowed = {"name", "description", "metadata", "updated_at"}
    assert set(changes) <= allowed
    values = {k: (_dumps(v) if k == "metadata" else v) for k, v in changes.items()}
    assignments = ", ".join(f"{name} = ?" for name in values)
    conn.execute(
        f"UPDATE instruments SET {assignments} WHERE id = ?", [*values.values(), instrument_id]
    )


@attrs.frozen
class Deleted:
    """What :func:`delete_instrument` did: ``"deleted"``, ``"missing"`` or ``"has_files"``."""

    outcome: str
    files: int = 0


def attached_files(conn: sqlite3.Connection, instrument_id: str) -> int:
    """How many files (confirmed or still uploading) are attached to an instrument."""
    row = conn.execute("SELECT count(*) FROM files WHERE instrument_id = ?", (instrument_id,))
    return int(row.fetchone()[0])


def delete_instrument(
    conn: sqlite3.Connection, org_id: str, instrument_id: str, *, force: bool
) -> Deleted:
    """Delete an instrument unless it has files and ``force`` is false.

    Its pairing codes, device keys and status periods go with it; its files stay, no longer
    attached to an instrument (the schema sets their ``instrument_id`` to null).
    """
    if not records.instrument_exists(conn, org_id, instrument_id):
        return Deleted("missing")
    count = attached_files(conn, instrument_id)
    if count and not force:
        return Deleted("has_files", count)
    conn.execute("DELETE FROM instruments WHERE id = ?", (instrument_id,))
    return Deleted("deleted", count)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


# -- pairing -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Pairing:
    """A new pairing code (shown once) and when it expires."""

    code: str
    expires_at: str


@attrs.frozen(kw_only=True)
class Redeemed:
    """The outcome of exchanging a pairing code.

    Attributes:
        error: Why it failed (``None`` on success).
        key: The device's new key.
        org_id: The instrument's organisation.
        instrument_id: The paired instrument.
    """

    error: str | None = None
    key: str | None = attrs.field(default=None, repr=False)
    org_id: str | None = None
    instrument_id: str | None = None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalise_code(code: str) -> str:
    """A pairing code as stored: upper case, without separators or spaces."""
    return "".join(ch for ch in code.upper() if ch not in "- \t")


def issue_pairing_code(
    conn: sqlite3.Connection, instrument_id: str, *, now: float, ttl: float = PAIRING_TTL
) -> Pairing:
    """Store a new one-time code for an instrument; codes it had not used yet stop working."""
    conn.execute(
        "DELETE FROM instrument_pairings WHERE instrument_id = ? AND used_at IS NULL",
        (instrument_id,),
    )
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    expires_at = iso(now + ttl)
    conn.execute(
        "INSERT INTO instrument_pairings (code_hash, instrument_id, created_at, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (_digest(raw), instrument_id, iso(now), expires_at),
    )
    return Pairing(
        code="-".join(raw[i : i + 4] for i in range(0, len(raw), 4)), expires_at=expires_at
    )


def redeem_pairing_code(
    conn: sqlite3.Connection, code: str, *, idempotency_key: str | None, now: float
) -> Redeemed:
    """Exchange a pairing code for a device key (see the module docstring)."""
    row = conn.execute(
        "SELECT p.*, i.org_id AS org_id FROM instrument_pairings p "
        "JOIN instruments i ON i.id = p.instrument_id WHERE p.code_hash = ?",
        (_digest(normalise_code(code)),),
    ).fetchone()
    if row is None:
        return Redeemed(error="Unknown pairing code")
    if row["expires_at"] <= iso(now):
        return Redeemed(error="This pairing code has expired; ask for a new one")
    idem_hash = _digest(idempotency_key) if idempotency_key else None
    instrument_id, org_id = row["instrument_id"], row["org_id"]
    if row["used_at"] is not None:
        # Only the exchange that spent the code may repeat it, and only while its key is still
        # the instrument's device key (a later pairing must not be undone by an old retry).
        later = conn.execute(
            "SELECT 1 FROM api_keys WHERE instrument_id = ? AND revoked = 0 AND id != ?",
            (instrument_id, row["key_id"]),
        ).fetchone()
        if idem_hash is None or idem_hash != row["idem_hash"] or later is not None:
            return Redeemed(error="This pairing code has already been used")
    # One device per instrument: earlier device keys (a retried exchange's first one too) stop.
    conn.execute("UPDATE api_keys SET revoked = 1 WHERE instrument_id = ?", (instrument_id,))
    key = auth.create_key(
        conn, org_id=org_id, scopes=["write"], now=now, instrument_id=instrument_id
    )
    parsed = auth.parse_key(key)
    assert parsed is not None
    key_row = records.key_by_prefix(conn, parsed[0])
    assert key_row is not None
    conn.execute(
        "UPDATE instrument_pairings SET used_at = COALESCE(used_at, ?), idem_hash = ?, key_id = ? "
        "WHERE code_hash = ?",
        (iso(now), idem_hash, key_row.id, row["code_hash"]),
    )
    conn.execute("UPDATE instruments SET paired_at = ? WHERE id = ?", (iso(now), instrument_id))
    return Redeemed(key=key, org_id=org_id, instrument_id=instrument_id)


# -- device status -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Period:
    """One device-status period (times in the stored ISO form)."""

    status: str
    first_seen: str
    last_seen: str
    app_version: str | None = None
    is_watching: bool | None = None


@attrs.frozen(kw_only=True)
class Current:
    """A device's status now and since when."""

    value: str
    since: str


@attrs.frozen(kw_only=True)
class History:
    """The periods of a window, and what was adjusted."""

    periods: list[Period]
    current: Current | None
    omitted: int


def _watching(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _period(row: sqlite3.Row) -> Period:
    return Period(
        status=row["status"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        app_version=row["app_version"],
        is_watching=_watching(row["is_watching"]),
    )


def _latest(conn: sqlite3.Connection, instrument_id: str) -> sqlite3.Row | None:
    row = conn.execute(
        "SELECT * FROM device_periods WHERE instrument_id = ? "
        "ORDER BY last_seen DESC, id DESC LIMIT 1",
        (instrument_id,),
    ).fetchone()
    return row  # type: ignore[no-any-return]


def _insert_period(
    conn: sqlite3.Connection,
    instrument_id: str,
    status: str,
    app_version: str | None,
    is_watching: bool | None,
    first_seen: str,
    last_seen: str,
    *,
    synthetic: bool = False,
) -> int:
    cur = conn.execute(
        "INSERT INTO device_periods (instrument_id, status, app_version, is_watching, synthetic, "
        "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            instrument_id,
            status,
            app_version,
            None if is_watching is None else int(is_watching),
            int(synthetic),
            first_seen,
            last_seen,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def report_status(
    conn: sqlite3.Connection,
    instrument_id: str,
    *,
    status: str,
    app_version: str | None,
    is_watching: bool | None,
    now: float,
) -> Period:
    """Fold one report into the instrument's periods; return the period it landed in."""
    at = iso(now)
    last = _latest(conn, instrument_id)
    if last is None:
        _insert_period(conn, instrument_id, status, app_version, is_watching, at, at)
        return Period(
            status=status,
            first_seen=at,
            last_seen=at,
            app_version=app_version,
            is_watching=is_watching,
        )
    # Reports are stamped by the server; a clock set back must not reorder the periods.
    at = max(at, last["last_seen"])
    if last["status"] != "offline" and from_iso(at) - from_iso(last["last_seen"]) > OFFLINE_AFTER:
        gap = _insert_period(
            conn, instrument_id, "offline", None, None, last["last_seen"], at, synthetic=True
        )
        last = conn.execute("SELECT * FROM device_periods WHERE id = ?", (gap,)).fetchone()
    watching = None if is_watching is None else int(is_watching)
    if last["status"] == "offline" and status == "offline":
        conn.execute(
            "UPDATE device_periods SET last_seen = ?, app_version = COALESCE(?, app_version), "
            "is_watching = COALESCE(?, is_watching), synthetic = 0 WHERE id = ?",
            (at, app_version, watching, last["id"]),
        )
    elif last["status"] == "offline":
        # The device was offline until this report.
        conn.execute("UPDATE device_periods SET last_seen = ? WHERE id = ?", (at, last["id"]))
        _insert_period(conn, instrument_id, status, app_version, is_watching, at, at)
    elif (last["status"], last["app_version"], last["is_watching"]) == (
        status,
        app_version,
        watching,
    ):
        conn.execute("UPDATE device_periods SET last_seen = ? WHERE id = ?", (at, last["id"]))
    else:
        _insert_period(conn, instrument_id, status, app_version, is_watching, at, at)
    latest = _latest(conn, instrument_id)
    assert latest is not None
    return _period(latest)


def current_status(conn: sqlite3.Connection, instrument_id: str, now: float) -> Current | None:
    """The device's status now (``None`` if it never reported)."""
    last = _latest(conn, instrument_id)
    if last is None:
        return None
    if last["status"] != "offline" and now - from_iso(last["last_seen"]) > OFFLINE_AFTER:
        return Current(value="offline", since=last["last_seen"])
    # Since the first period of the current run of this status (versions may have changed):
    # walk back from the newest period (usually a step or two) to the last one of another status.
    since = last["first_seen"]
    for row in conn.execute(
        "SELECT status, first_seen FROM device_periods WHERE instrument_id = ? "
        "ORDER BY last_seen DESC, id DESC",
        (instrument_id,),
    ):
        if row["status"] != last["status"]:
            break
        since = row["first_seen"]
    return Current(value=last["status"], since=since)


def _clip(period: Period, start: str, end: str) -> Period | None:
    if period.first_seen == period.last_seen:
        inside = start <= period.first_seen <= end
        return period if inside else None
    if period.last_seen <= start or period.first_seen >= end:
        return None
    return attrs.evolve(
        period, first_seen=max(period.first_seen, start), last_seen=min(period.last_seen, end)
    )


def history(
    conn: sqlite3.Connection, instrument_id: str, *, start: float, end: float, now: float
) -> History:
    """The periods overlapping ``[start, end]`` (see the module docstring)."""
    lo, hi, at = iso(start), iso(end), iso(now)
    last = _latest(conn, instrument_id)
    if last is None:
        return History(periods=[], current=None, omitted=0)
    # The latest period is extended to now at read time; it may reach the window although its
    # stored last_seen is before it.
    tail = [_period(last)]
    if last["status"] == "offline":
        tail = [attrs.evolve(tail[0], last_seen=max(at, last["last_seen"]))]
    elif now - from_iso(last["last_seen"]) > OFFLINE_AFTER:
        tail.append(Period(status="offline", first_seen=last["last_seen"], last_seen=at))
    # The same overlap test as _clip, so every row fetched survives clipping.
    # (The leading last_seen bound is implied by both branches; it lets the index skip older
    # periods.)
    where = (
        "instrument_id = ? AND last_seen >= ? AND id < ? AND ((first_seen = last_seen AND "
        "first_seen >= ? AND first_seen <= ?) OR (first_seen < last_seen AND last_seen > ? AND "
        "first_seen < ?))"
    )
    params = (instrument_id, lo, last["id"], lo, hi, lo, hi)
    total = conn.execute(f"SELECT count(*) FROM device_periods WHERE {where}", params)
    stored = int(total.fetchone()[0])
    rows = conn.execute(
        f"SELECT * FROM device_periods WHERE {where} ORDER BY last_seen DESC, id DESC LIMIT ?",
        (*params, MAX_PERIODS),
    ).fetchall()
    recent = [p for p in (_clip(t, lo, hi) for t in tail) if p is not None]
    candidates = [_clip(_period(row), lo, hi) for row in reversed(rows)]
    periods = [p for p in candidates if p is not None] + recent
    kept = periods[-MAX_PERIODS:]
    omitted = stored + len(recent) - len(kept)
    return History(periods=kept, current=current_status(conn, instrument_id, now), omitted=omitted)

"""Data access: small synchronous functions over the metadata tables.

Every function takes the connection as its first argument and runs inside the transaction that
:meth:`labric.server.core.db.Database.run` opened, so a handler composes several of them into one
atomic step by running a closure on the database thread. Nothing here touches the disk outside
SQLite or knows about HTTP.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

__all__ = [
    "ExecutionRow",
    "FileRow",
    "KeyListing",
    "KeyRow",
    "PartRow",
    "StoredResponse",
    "all_generations",
    "claim_object",
    "clear_object",
    "confirm_file",
    "delete_file",
    "delete_part",
    "delete_parts",
    "drop_upload",
    "execution_get",
    "execution_status",
    "expire_executions",
    "file_get",
    "finish_execution",
    "get_or_create_job",
    "get_or_create_org",
    "idem_prune",
    "insert_execution",
    "insert_file",
    "insert_instrument",
    "insert_key",
    "instrument_exists",
    "job_by_id",
    "key_by_prefix",
    "list_files",
    "list_keys",
    "mark_parts_synced",
    "meta_get",
    "meta_set",
    "new_id",
    "org_by_name",
    "part_get",
    "parts_of",
    "pending_at_path",
    "put_part",
    "reset_uploads",
    "revoke_key",
    "set_upload_generation",
    "settle_unsynced_parts",
    "touch_key",
    "unsynced_uploads",
    "update_pending",
]


def new_id() -> str:
    """A new random public id."""
    return str(uuid.uuid4())


# -- organisations, meta ---------------------------------------------------------------------


def org_by_name(conn: sqlite3.Connection, name: str) -> str | None:
    """The id of the organisation called ``name``."""
    row = conn.execute("SELECT id FROM organisations WHERE name = ?", (name,)).fetchone()
    return str(row["id"]) if row else None


def get_or_create_org(conn: sqlite3.Connection, name: str, now: str) -> str:
    """The id of the organisation called ``name``, created if missing."""
    org_id = org_by_name(conn, name)
    if org_id is None:
        org_id = new_id()
        conn.execute(
            "INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?)",
            (org_id, name, now),
        )
    return org_id


def meta_get(conn: sqlite3.Connection, key: str) -> str | None:
    """A value from ``server_meta``."""
    row = conn.execute("SELECT value FROM server_meta WHERE key = ?", (key,)).fetchone()
    return str(row["value"]) if row else None


def meta_set(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a value in ``server_meta``."""
    conn.execute(
        "INSERT INTO server_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


# -- API keys ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class KeyRow:
    """A stored API key (its secret only as a hash)."""

    id: str
    prefix: str
    secret_hash: str
    org_id: str
    scopes: frozenset[str]
    expires_at: str | None
    revoked: bool
    job_execution_id: str | None
    instrument_id: str | None = None


def insert_key(
    conn: sqlite3.Connection,
    *,
    prefix: str,
    secret_hash: str,
    org_id: str,
    scopes: Iterable[str],
    now: str,
    expires_at: str | None = None,
    job_execution_id: str | None = None,
    instrument_id: str | None = None,
    name: str | None = None,
) -> str:
    """Store a new key; return its id (``instrument_id``: a paired device's key)."""
    key_id = new_id()
    conn.execute(
        "INSERT INTO api_keys (id, prefix, secret_hash, org_id, scopes, created_at, expires_at, "
        "job_execution_id, instrument_id, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key_id,
            prefix,
            secret_hash,
            org_id,
            ",".join(sorted(set(scopes))),
            now,
            expires_at,
            job_execution_id,
            instrument_id,
            name,
        ),
    )
    return key_id


def key_by_prefix(conn: sqlite3.Connection, prefix: str) -> KeyRow | None:
    """The key with this public prefix."""
    row = conn.execute("SELECT * FROM api_keys WHERE prefix = ?", (prefix,)).fetchone()
    if row is None:
        return None
    return KeyRow(
        id=row["id"],
        prefix=row["prefix"],
        secret_hash=row["secret_hash"],
        org_id=row["org_id"],
        scopes=frozenset(s for s in str(row["scopes"]).split(",") if s),
        expires_at=row["expires_at"],
        revoked=bool(row["revoked"]),
        job_execution_id=row["job_execution_id"],
        instrument_id=row["instrument_id"],
    )


@attrs.frozen(kw_only=True)
class KeyListing:
    """What ``labric keys list`` shows of a key: never its secret, nor even its hash."""

    prefix: str
    name: str | None
    org: str
    scopes: tuple[str, ...]
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked: bool
    instrument_id: str | None


def list_keys(conn: sqlite3.Connection) -> list[KeyListing]:
    """Every key but job executions' short-lived ones, oldest first."""
    rows = conn.execute(
        "SELECT k.*, o.name AS org_name FROM api_keys k JOIN organisations o ON o.id = k.org_id "
        "WHERE k.job_execution_id IS NULL ORDER BY k.created_at, k.prefix"
    ).fetchall()
    return [
        KeyListing(
            prefix=row["prefix"],
            name=row["name"],
            org=row["org_name"],
            scopes=tuple(s for s in str(row["scopes"]).split(",") if s),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            last_used_at=row["last_used_at"],
            revoked=bool(row["revoked"]),
            instrument_id=row["instrument_id"],
        )
        for row in rows
    ]


def touch_key(conn: sqlite3.Connection, key_id: str, now: str, stale_before: str) -> None:
    """Record a key's use, unless it was recorded since ``stale_before``."""
    conn.execute(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ? "
        "AND (last_used_at IS NULL OR last_used_at < ?)",
        (now, key_id, stale_before),
    )


def revoke_key(conn: sqlite3.Connection, prefix: str) -> bool:
    """Revoke the key with this prefix; return whether one was found."""
    cur = conn.execute("UPDATE api_keys SET revoked = 1 WHERE prefix = ?", (prefix,))
    return cur.rowcount > 0


# -- instruments ---------------------------------------------------------------------------


def insert_instrument(conn: sqlite3.Connection, org_id: str, name: str, now: str) -> str:
    """Create an instrument; return its id."""
    instrument_id = new_id()
    conn.execute(
        "INSERT INTO instruments (id, org_id, name, created_at) VALUES (?, ?, ?, ?)",
        (instrument_id, org_id, name, now),
    )
    return instrument_id


def instrument_exists(conn: sqlite3.Connection, org_id: str, instrument_id: str) -> bool:
    """Whether the organisation has this instrument."""
    row = conn.execute(
        "SELECT 1 FROM instruments WHERE id = ? AND org_id = ?", (instrument_id, org_id)
    ).fetchone()
    return row is not None


# -- jobs and executions -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ExecutionRow:
    """A job execution, with its job's name."""

    id: str
    org_id: str
    job_id: str
    job_name: str
    status: str
    off_platform: bool
    started_at: str | None
    completed_at: str | None
    timeout_at: str | None


def job_by_id(conn: sqlite3.Connection, org_id: str, job_id: str) -> tuple[str, str] | None:
    """``(id, name)`` of the organisation's job ``job_id``."""
    row = conn.execute(
        "SELECT id, name FROM jobs WHERE id = ? AND org_id = ?", (job_id, org_id)
    ).fetchone()
    return (row["id"], row["name"]) if row else None


def get_or_create_job(conn: sqlite3.Connection, org_id: str, name: str, now: str) -> str:
    """The id of the organisation's job called ``name``, created (as a draft) if missing."""
    row = conn.execute(
        "SELECT id FROM jobs WHERE org_id = ? AND name = ?", (org_id, name)
    ).fetchone()
    if row is not None:
        return str(row["id"])
    job_id = new_id()
    conn.execute(
        "INSERT INTO jobs (id, org_id, name, created_at) VALUES (?, ?, ?, ?)",
        (job_id, org_id, name, now),
    )
    return job_id


def expire_executions(conn: sqlite3.Connection, now: str) -> int:
    """Fail every running execution whose timeout has passed; return how many."""
    cur = conn.execute(
        "UPDATE job_executions SET status = 'failed', completed_at = timeout_at "
        "WHERE status = 'running' AND timeout_at IS NOT NULL AND timeout_at <= ?",
        (now,),
    )
    return cur.rowcount


def insert_execution(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    job_id: str,
    status: str,
    off_platform: bool,
    now: str,
    timeout_at: str | None,
) -> str:
    """Create an execution that starts now; return its id."""
    execution_id = new_id()
    conn.execute(
        "INSERT INTO job_executions (id, org_id, job_id, status, off_platform, created_at, "
        "started_at, timeout_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (execution_id, org_id, job_id, status, int(off_platform), now, now, timeout_at),
    )
    return execution_id


def execution_get(conn: sqlite3.Connection, org_id: str, execution_id: str) -> ExecutionRow | None:
    """The organisation's execution ``execution_id`` (after applying timeouts is up to callers)."""
    row = conn.execute(
        "SELECT e.*, j.name AS job_name FROM job_executions e JOIN jobs j ON j.id = e.job_id "
        "WHERE e.id = ? AND e.org_id = ?",
        (execution_id, org_id),
    ).fetchone()
    if row is None:
        return None
    return ExecutionRow(
        id=row["id"],
        org_id=row["org_id"],
        job_id=row["job_id"],
        job_name=row["job_name"],
        status=row["status"],
        off_platform=bool(row["off_platform"]),
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        timeout_at=row["timeout_at"],
    )


def execution_status(conn: sqlite3.Connection, execution_id: str) -> str | None:
    """The status of an execution of any organisation."""
    row = conn.execute("SELECT status FROM job_executions WHERE id = ?", (execution_id,)).fetchone()
    return str(row["status"]) if row else None


def finish_execution(conn: sqlite3.Connection, execution_id: str, status: str, now: str) -> None:
    """Move a running execution to a terminal status."""
    conn.execute(
        "UPDATE job_executions SET status = ?, completed_at = ? "
        "WHERE id = ? AND status = 'running'",
        (status, now, execution_id),
    )


# -- files ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FileRow:
    """A file record; ``generation`` 0 means no object is stored yet, ``upload_generation`` 0
    that no multipart upload file exists yet."""

    seq: int
    id: str
    org_id: str
    file_name: str
    original_path: str
    content_type: str
    size_bytes: int | None
    crc32c: str | None
    status: str
    source_type: str
    instrument_id: str | None
    job_execution_id: str | None
    created_at: str
    confirmed_at: str | None
    part_size: int | None
    expected_size: int | None
    expected_crc32c: str | None
    generation: int
    upload_generation: int


_FILE_FIELDS = tuple(a.name for a in attrs.fields(FileRow))


def _file(row: sqlite3.Row) -> FileRow:
    return FileRow(**{name: row[name] for name in _FILE_FIELDS})


def file_get(conn: sqlite3.Connection, file_id: str, org_id: str | None = None) -> FileRow | None:
    """A file by id, of the given organisation (or of any, for signed storage requests)."""
    if org_id is None:
        row = conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
    else:
        row = conn.execute(
            "SELECT * FROM files WHERE id = ? AND org_id = ?", (file_id, org_id)
        ).fetchone()
    return _file(row) if row else None


def insert_file(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    file_name: str,
    original_path: str,
    content_type: str,
    source_type: str,
    instrument_id: str | None,
    job_execution_id: str | None,
    now: str,
    part_size: int | None = None,
    expected_size: int | None = None,
    expected_crc32c: str | None = None,
    file_id: str | None = None,
) -> FileRow:
    """Create a pending file record; return it."""
    file_id = file_id or new_id()
    conn.execute(
        "INSERT INTO files (id, org_id, file_name, original_path, content_type, status, "
        "source_type, instrument_id, job_execution_id, created_at, part_size, expected_size, "
        "expected_crc32c) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
        (
            file_id,
            org_id,
            file_name,
            original_path,
            content_type,
            source_type,
            instrument_id,
            job_execution_id,
            now,
            part_size,
            expected_size,
            expected_crc32c,
        ),
    )
    found = file_get(conn, file_id)
    assert found is not None
    return found


def pending_at_path(
    conn: sqlite3.Connection, org_id: str, instrument_id: str, original_path: str
) -> FileRow | None:
    """The unconfirmed upload of ``original_path`` on an instrument, if there is one."""
    row = conn.execute(
        "SELECT * FROM files WHERE org_id = ? AND instrument_id = ? AND original_path = ? "
        "AND status = 'pending' ORDER BY seq DESC LIMIT 1",
        (org_id, instrument_id, original_path),
    ).fetchone()
    return _file(row) if row else None


def update_pending(
    conn: sqlite3.Connection,
    file_id: str,
    *,
    content_type: str,
    job_execution_id: str | None,
    part_size: int | None,
    expected_size: int | None,
    expected_crc32c: str | None,
) -> None:
    """Refresh an unconfirmed upload's plan when it is asked for again."""
    conn.execute(
        "UPDATE files SET content_type = ?, job_execution_id = COALESCE(?, job_execution_id), "
        "part_size = ?, expected_size = ?, expected_crc32c = ? "
        "WHERE id = ? AND status = 'pending'",
        (content_type, job_execution_id, part_size, expected_size, expected_crc32c, file_id),
    )


def claim_object(
    conn: sqlite3.Connection, file_id: str, generation: int, size: int, crc32c: str
) -> str:
    """Record a stored object for a pending file, create-only.

    Returns:
        ``"ok"``, ``"exists"`` (an object is already stored, or the file is confirmed) or
        ``"missing"`` (the record is gone).
    """
    row = file_get(conn, file_id)
    if row is None:
        return "missing"
    if row.status != "pending" or row.generation != 0:
        return "exists"
    conn.execute(
        "UPDATE files SET generation = ?, size_bytes = ?, crc32c = ? WHERE id = ?",
        (generation, size, crc32c, file_id),
    )
    return "ok"


def clear_object(conn: sqlite3.Connection, file_id: str) -> None:
    """Forget a pending file's stored object (after it was discarded)."""
    conn.execute(
        "UPDATE files SET generation = 0, size_bytes = NULL, crc32c = NULL "
        "WHERE id = ? AND status = 'pending'",
        (file_id,),
    )


def confirm_file(
    conn: sqlite3.Connection,
    file_id: str,
    *,
    now: str,
    generation: int,
    size: int,
    crc32c: str,
) -> None:
    """Mark a file confirmed with its object's generation, size and checksum (and no upload
    file: the caller forgets its parts and removes it)."""
    conn.execute(
        "UPDATE files SET status = 'confirmed', confirmed_at = ?, generation = ?, "
        "size_bytes = ?, crc32c = ?, upload_generation = 0 WHERE id = ?",
        (now, generation, size, crc32c, file_id),
    )


def delete_file(conn: sqlite3.Connection, file_id: str) -> None:
    """Delete a file record (its parts go with it)."""
    conn.execute("DELETE FROM files WHERE id = ?", (file_id,))


def list_files(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    instrument_id: str | None,
    extensions: Sequence[str],
    terms: Sequence[str],
    after: tuple[str, int] | None,
    limit: int,
) -> list[FileRow]:
    """Confirmed files, newest first (``created_at``, then insertion order), after a cursor.

    Args:
        extensions: Case-folded suffixes including the dot (``".csv"``); any may match.
        terms: Case-folded terms that must all appear in the original path.
        after: ``(created_at, seq)`` of the last file of the previous page.
    """
    where = ["org_id = ?", "status = 'confirmed'"]
    params: list[Any] = [org_id]
    if instrument_id is not None:
        where.append("instrument_id = ?")
        params.append(instrument_id)
    if extensions:
        where.append(
            "(" + " OR ".join("substr(casefold(file_name), ?) = ?" for _ in extensions) + ")"
        )
        for ext in extensions:
            params += [-len(ext), ext]
    for term in terms:
        where.append("instr(casefold(original_path), ?) > 0")
        params.append(term)
    if after is not None:
        where.append("(created_at, seq) < (?, ?)")
        params += [after[0], after[1]]
    sql = (
        f"SELECT * FROM files WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, seq DESC LIMIT ?"
    )
    params.append(limit)
    return [_file(row) for row in conn.execute(sql, params)]


def all_generations(
    conn: sqlite3.Connection,
) -> tuple[set[tuple[str, int]], dict[tuple[str, int], int]]:
    """Every stored object ``(file_id, generation)``, and every upload file
    ``(file_id, upload_generation)`` with the size it was created with."""
    objects = {
        (row["id"], int(row["generation"]))
        for row in conn.execute("SELECT id, generation FROM files WHERE generation != 0")
    }
    uploads = {
        (row["id"], int(row["upload_generation"])): int(row["expected_size"])
        for row in conn.execute(
            "SELECT id, upload_generation, expected_size FROM files "
            "WHERE upload_generation != 0 AND expected_size IS NOT NULL"
        )
    }
    return objects, uploads


# -- upload parts --------------------------------------------------------------------------


def set_upload_generation(
    conn: sqlite3.Connection,
    file_id: str,
    generation: int,
    *,
    part_size: int,
    expected_size: int,
) -> bool:
    """Name a pending file's upload file, if it has none yet and its plan is still the one the
    file was created for; return whether it was recorded."""
    cur = conn.execute(
        "UPDATE files SET upload_generation = ? WHERE id = ? AND status = 'pending' "
        "AND upload_generation = 0 AND part_size = ? AND expected_size = ?",
        (generation, file_id, part_size, expected_size),
    )
    return cur.rowcount > 0


def drop_upload(conn: sqlite3.Connection, file_id: str) -> int:
    """Forget a file's multipart upload (parts and upload file); return the upload file's
    generation (0: there was none), for the caller to remove it."""
    row = conn.execute("SELECT upload_generation FROM files WHERE id = ?", (file_id,)).fetchone()
    conn.execute("DELETE FROM upload_parts WHERE file_id = ?", (file_id,))
    conn.execute("UPDATE files SET upload_generation = 0 WHERE id = ?", (file_id,))
    return int(row["upload_generation"]) if row else 0


def reset_uploads(conn: sqlite3.Connection, file_ids: Iterable[str]) -> None:
    """Forget the multipart uploads whose upload file is gone (found at start)."""
    for file_id in file_ids:
        drop_upload(conn, file_id)


@attrs.frozen(kw_only=True)
class PartRow:
    """A stored part of a multipart upload; ``generation`` is the upload file's it was written
    into (a part is recorded only once its bytes are on disk there)."""

    number: int
    size: int
    crc32c: str
    generation: int


def parts_of(conn: sqlite3.Connection, file_id: str) -> list[PartRow]:
    """The parts stored for a file, by number."""
    return [
        PartRow(
            number=row["number"],
            size=row["size"],
            crc32c=row["crc32c"],
            generation=row["generation"],
        )
        for row in conn.execute(
            "SELECT number, size, crc32c, generation FROM upload_parts WHERE file_id = ? "
            "ORDER BY number",
            (file_id,),
        )
    ]


def part_get(conn: sqlite3.Connection, file_id: str, number: int) -> PartRow | None:
    """One stored part of a file."""
    row = conn.execute(
        "SELECT number, size, crc32c, generation FROM upload_parts "
        "WHERE file_id = ? AND number = ?",
        (file_id, number),
    ).fetchone()
    if row is None:
        return None
    return PartRow(
        number=row["number"], size=row["size"], crc32c=row["crc32c"], generation=row["generation"]
    )


def put_part(
    conn: sqlite3.Connection,
    file_id: str,
    number: int,
    size: int,
    crc32c: str,
    generation: int,
    *,
    synced: bool = True,
) -> int | None:
    """Record a part (replacing an earlier copy); return the replaced copy's generation.

    ``synced`` says whether its bytes are already durable (synced); a part written but not
    yet synced is marked so by :func:`mark_parts_synced` once a sync covers it.
    """
    row = conn.execute(
        "SELECT generation FROM upload_parts WHERE file_id = ? AND number = ?",
        (file_id, number),
    ).fetchone()
    conn.execute(
        "INSERT INTO upload_parts (file_id, number, size, crc32c, generation, synced) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (file_id, number) DO UPDATE SET "
        "size = excluded.size, crc32c = excluded.crc32c, generation = excluded.generation, "
        "synced = excluded.synced",
        (file_id, number, size, crc32c, generation, int(synced)),
    )
    return int(row["generation"]) if row else None


def mark_parts_synced(
    conn: sqlite3.Connection, file_id: str, generation: int, parts: Iterable[tuple[int, str]]
) -> None:
    """Mark parts ``(number, crc32c)`` of upload file ``generation`` as synced. A part since
    replaced by other bytes (another CRC32C) is left as it is: the sync did not cover those."""
    conn.executemany(
        "UPDATE upload_parts SET synced = 1 "
        "WHERE file_id = ? AND number = ? AND crc32c = ? AND generation = ? AND synced = 0",
        [(file_id, number, crc, generation) for number, crc in parts],
    )


def unsynced_uploads(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """``(file_id, upload_generation)`` of every upload with parts recorded but not synced."""
    return [
        (row["id"], row["upload_generation"])
        for row in conn.execute(
            "SELECT DISTINCT files.id, files.upload_generation FROM upload_parts "
            "JOIN files ON files.id = upload_parts.file_id "
            "WHERE upload_parts.synced = 0 AND upload_parts.generation = files.upload_generation"
        )
    ]


def settle_unsynced_parts(conn: sqlite3.Connection, *, keep: bool) -> int:
    """Mark every unsynced part synced (``keep``: its upload file was just synced), or forget
    them all (their bytes may be lost); return how many there were."""
    if keep:
        return conn.execute("UPDATE upload_parts SET synced = 1 WHERE synced = 0").rowcount
    return conn.execute("DELETE FROM upload_parts WHERE synced = 0").rowcount


def delete_part(conn: sqlite3.Connection, file_id: str, number: int) -> None:
    """Forget one part of a file."""
    conn.execute("DELETE FROM upload_parts WHERE file_id = ? AND number = ?", (file_id, number))


def delete_parts(conn: sqlite3.Connection, file_id: str) -> list[PartRow]:
    """Forget every part of a file; return what was there."""
    parts = parts_of(conn, file_id)
    conn.execute("DELETE FROM upload_parts WHERE file_id = ?", (file_id,))
    return parts


# -- idempotency ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StoredResponse:
    """A response kept for replay under an ``Idempotency-Key``."""

    status: int
    body: bytes
    headers: dict[str, str]


def idem_prune(conn: sqlite3.Connection, before: str) -> int:
    """Forget responses stored before ``before``; return how many."""
    return conn.execute("DELETE FROM idempotency WHERE created_at < ?", (before,)).rowcount

"""Experiments on the local server: records and their links to files.

Functions run on the database thread inside the caller's transaction (``conn`` first), like
:mod:`labric.server.core.records`. An experiment's links to dataset rows live in the organisation's
dataset file (``core_experiment_row``, kept by :mod:`labric.server.datasets`); its links to files
live here, and go when either side is deleted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs

from labric.server.core.records import FileRow

__all__ = [
    "STATUSES",
    "ExperimentRecord",
    "delete_experiment",
    "experiment_files",
    "get_experiment",
    "insert_experiment",
    "link_files",
    "list_experiments",
    "missing_files",
    "unlink_file",
    "update_experiment",
]

#: An experiment's statuses, in the order an experiment usually moves through them.
STATUSES = ("planned", "running", "completed", "failed", "archived")
_COLUMNS = ("name", "description", "status", "tags", "metadata", "started_at", "ended_at")
_FILE_FIELDS = tuple(a.name for a in attrs.fields(FileRow))


@attrs.frozen(kw_only=True)
class ExperimentRecord:
    """An experiment (``rowid`` orders those sharing a ``created_at``, for cursors)."""

    rowid: int
    id: str
    org_id: str
    name: str
    description: str | None
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    started_at: str | None
    ended_at: str | None
    created_at: str
    updated_at: str


def _record(row: sqlite3.Row) -> ExperimentRecord:
    return ExperimentRecord(
        rowid=row["rowid"],
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        description=row["description"],
        status=row["status"],
        tags=json.loads(row["tags"]),
        metadata=json.loads(row["metadata"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _stored(name: str, value: Any) -> Any:
    if name in ("tags", "metadata"):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def insert_experiment(
    conn: sqlite3.Connection, org_id: str, experiment_id: str, fields: dict[str, Any], now: str
) -> ExperimentRecord:
    """Create an experiment from ``fields`` (the columns of :data:`_COLUMNS`); return it."""
    values = {name: _stored(name, fields.get(name)) for name in _COLUMNS}
    conn.execute(
        f"INSERT INTO experiments (id, org_id, {', '.join(values)}, created_at, updated_at) "
        f"VALUES (?, ?, {', '.join('?' for _ in values)}, ?, ?)",
        (experiment_id, org_id, *values.values(), now, now),
    )
    found = get_experiment(conn, org_id, experiment_id)
    assert found is not None
    return found


def get_experiment(
    conn: sqlite3.Connection, org_id: str, experiment_id: str
) -> ExperimentRecord | None:
    """The organisation's experiment ``experiment_id``."""
    row = conn.execute(
        "SELECT rowid, * FROM experiments WHERE id = ? AND org_id = ?", (experiment_id, org_id)
    ).fetchone()
    return _record(row) if row else None


def list_experiments(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    status: str | None,
    tag: str | None,
    terms: Sequence[str],
    after: tuple[str, int] | None,
    limit: int,
) -> list[ExperimentRecord]:
    """Experiments, newest first, filtered, after a ``(created_at, rowid)`` cursor.

    Args:
        status: Only this status.
        tag: Only experiments carrying this tag (exactly).
        terms: Case-folded terms that must all appear in the name or the description.
    """
    where = ["org_id = ?"]
    params: list[Any] = [org_id]
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if tag is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(experiments.tags) WHERE value = ?)")
        params.append(tag)
    for term in terms:
        where.append("instr(casefold(name || ' ' || coalesce(description, '')), ?) > 0")
        params.append(term)
    if after is not None:
        where.append("(created_at, rowid) < (?, ?)")
        params += [after[0], after[1]]
    sql = (
        f"SELECT rowid, * FROM experiments WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?"
    )
    return [_record(row) for row in conn.execute(sql, [*params, limit])]


def update_experiment(
    conn: sqlite3.Connection, experiment_id: str, changes: dict[str, Any], now: str
) -> None:
    """Set the given columns (of :data:`_COLUMNS`) and ``updated_at``."""
    assert set(changes) <= set(_COLUMNS)
    values = {name: _stored(name, value) for name, value in changes.items()}
    values["updated_at"] = now
    assignments = ", ".join(f"{name} = ?" for name in values)
    conn.execute(
        f"UPDATE experiments SET {assignments} WHERE id = ?", [*values.values(), experiment_id]
    )


def delete_experiment(conn: sqlite3.Connection, org_id: str, experiment_id: str) -> bool:
    """Delete an experiment and its file links; return whether it existed."""
    cur = conn.execute(
        "DELETE FROM experiments WHERE id = ? AND org_id = ?", (experiment_id, org_id)
    )
    return cur.rowcount > 0


def missing_files(conn: sqlite3.Connection, org_id: str, file_ids: Sequence[str]) -> list[str]:
    """The ids among ``file_ids`` that are not confirmed files of the organisation."""
    missing = []
    for file_id in file_ids:
        row = conn.execute(
            "SELECT 1 FROM files WHERE id = ? AND org_id = ? AND status = 'confirmed'",
            (file_id, org_id),
        ).fetchone()
        if row is None:
            missing.append(file_id)
    return missing


def link_files(
    conn: sqlite3.Connection, experiment_id: str, file_ids: Sequence[str], now: str
) -> tuple[int, int]:
    """Link files to an experiment: ``(links added, links it now has)``."""
    added = 0
    for file_id in file_ids:
        cur = conn.execute(
            "INSERT OR IGNORE INTO experiment_files "
            "(experiment_id, file_id, created_at, file_created_at, file_seq) "
            "SELECT ?, id, ?, created_at, seq FROM files WHERE id = ?",
            (experiment_id, now, file_id),
        )
        added += cur.rowcount
    total = conn.execute(
        "SELECT count(*) FROM experiment_files WHERE experiment_id = ?", (experiment_id,)
    ).fetchone()[0]
    return added, int(total)


def unlink_file(conn: sqlite3.Connection, experiment_id: str, file_id: str) -> bool:
    """Remove one file link; return whether it existed."""
    cur = conn.execute(
        "DELETE FROM experiment_files WHERE experiment_id = ? AND file_id = ?",
        (experiment_id, file_id),
    )
    return cur.rowcount > 0


def experiment_files(
    conn: sqlite3.Connection,
    experiment_id: str,
    *,
    after: tuple[str, int] | None,
    limit: int,
) -> list[FileRow]:
    """An experiment's confirmed files, newest first (as ``GET /v1/files`` orders them)."""
    where = ["l.experiment_id = ?", "f.status = 'confirmed'"]
    params: list[Any] = [experiment_id]
    if after is not None:
        where.append("(l.file_created_at, l.file_seq) < (?, ?)")
        params += [after[0], after[1]]
    sql = (
        "SELECT f.* FROM experiment_files l JOIN files f ON f.seq = l.file_seq "
        f"WHERE {' AND '.join(where)} ORDER BY l.file_created_at DESC, l.file_seq DESC LIMIT ?"
    )
    return [
        FileRow(**{name: row[name] for name in _FILE_FIELDS})
        for row in conn.execute(sql, [*params, limit])
    ]

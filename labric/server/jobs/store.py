"""Data access for jobs, scripts, triggers and platform executions.

Like :mod:`labric.server.core.records`, every function takes the connection first and runs inside
the transaction :meth:`labric.server.core.db.Database.run` opened, so a caller composes several
into one atomic step. The trigger functions (``fire_*``), which decide *and* enqueue in the
caller's transaction, are in :mod:`labric.server.jobs.firing`.

Executions move ``queued`` -> ``running`` -> ``completed`` | ``failed``. Only
:func:`claim_next` starts one (and creates its ephemeral key in the same step); only
:func:`~labric.server.jobs.firing.finish_platform` and :func:`fail_unfinished` end one. The
key needs no revoking: it is accepted only while its execution is ``running`` (and expires
anyway shortly after the execution's time limit).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from labric.server.core import auth, records
from labric.server.core.db import iso
from labric.server.jobs.cron import CronError, CronSchedule

__all__ = [
    "Claim",
    "ExecutionRecord",
    "InputFile",
    "JobRecord",
    "TriggerRecord",
    "claim_next",
    "enqueue",
    "execution_get",
    "execution_list",
    "execution_logs",
    "fail_unfinished",
    "job_by_name",
    "job_from_row",
    "job_get",
    "job_insert",
    "job_list",
    "job_update",
    "next_fire_at",
    "script_add",
    "script_get",
    "trigger_delete",
    "trigger_of",
    "trigger_set",
]


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# -- jobs ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TriggerRecord:
    """A job's trigger."""

    id: str
    job_id: str
    category: str
    instrument_id: str | None
    instrument_name: str | None
    conditions: dict[str, Any] | None
    next_fire_at: str | None


@attrs.frozen(kw_only=True)
class JobRecord:
    """A job, its trigger, and (when asked for) its current script."""

    id: str
    org_id: str
    name: str
    description: str | None
    archived: bool
    publish_status: str
    created_at: str
    updated_at: str | None
    script_version: int
    parameter_definitions: list[dict[str, Any]] | None
    timeout_seconds: int | None
    trigger: TriggerRecord | None
    rowid: int
    code: str | None = None


def trigger_of(conn: sqlite3.Connection, job_id: str) -> TriggerRecord | None:
    row = conn.execute(
        "SELECT t.*, i.name AS instrument_name FROM job_triggers t "
        "LEFT JOIN instruments i ON i.id = t.instrument_id WHERE t.job_id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    return TriggerRecord(
        id=row["id"],
        job_id=row["job_id"],
        category=row["category"],
        instrument_id=row["instrument_id"],
        instrument_name=row["instrument_name"],
        conditions=_loads(row["conditions"]),
        next_fire_at=row["next_fire_at"],
    )


def job_from_row(conn: sqlite3.Connection, row: sqlite3.Row, with_code: bool) -> JobRecord:
    code = script_get(conn, row["id"], row["script_version"]) if with_code else None
    return JobRecord(
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        description=row["description"],
        archived=bool(row["archived"]),
        publish_status=row["publish_status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        script_version=int(row["script_version"]),
        parameter_definitions=_loads(row["parameter_definitions"]),
        timeout_seconds=row["timeout_seconds"],
        trigger=trigger_of(conn, row["id"]),
        rowid=int(row["rowid"]),
        code=code,
    )


def job_get(
    conn: sqlite3.Connection, org_id: str, job_id: str, *, with_code: bool = False
) -> JobRecord | None:
    """The organisation's job ``job_id``."""
    row = conn.execute(
        "SELECT rowid, * FROM jobs WHERE id = ? AND org_id = ?", (job_id, org_id)
    ).fetchone()
    return job_from_row(conn, row, with_code) if row else None


def job_by_name(conn: sqlite3.Connection, org_id: str, name: str) -> str | None:
    """The id of the organisation's job called ``name``."""
    row = conn.execute(
        "SELECT id FROM jobs WHERE org_id = ? AND name = ?", (org_id, name)
    ).fetchone()
    return str(row["id"]) if row else None


def job_list(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    name: str | None,
    include_archived: bool,
    after: tuple[str, int] | None,
    limit: int,
) -> list[JobRecord]:
    """Jobs, newest first (creation time, then insertion order), after a cursor."""
    where = ["org_id = ?"]
    params: list[Any] = [org_id]
    if name is not None:
        where.append("name = ?")
        params.append(name)
    if not include_archived:
        where.append("archived = 0")
    if after is not None:
        where.append("(created_at, rowid) < (?, ?)")
        params += [after[0], after[1]]
    params.append(limit)
    rows = conn.execute(
        f"SELECT rowid, * FROM jobs WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
        params,
    ).fetchall()
    return [job_from_row(conn, row, False) for row in rows]


def job_insert(
    conn: sqlite3.Connection,
    *,
    org_id: str,
    name: str,
    description: str | None,
    code: str,
    parameter_definitions: list[dict[str, Any]] | None,
    timeout_seconds: int | None,
    now: str,
) -> str:
    """Create a draft job with its first script version; return its id."""
    job_id = records.new_id()
    conn.execute(
        "INSERT INTO jobs (id, org_id, name, description, created_at, updated_at, "
        "parameter_definitions, timeout_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            org_id,
            name,
            description,
            now,
            now,
            _dumps(parameter_definitions),
            timeout_seconds,
        ),
    )
    script_add(conn, job_id, code, now)
    return job_id


_UPDATABLE = (
    "name",
    "description",
    "archived",
    "publish_status",
    "parameter_definitions",
    "timeout_seconds",
)


def job_update(conn: sqlite3.Connection, job_id: str, changes: Mapping[str, Any], now: str) -> None:
    """Change some of a job's columns (``parameter_definitions`` given as a list)."""
    sets = []
    params: list[Any] = []
    for key, value in changes.items():
        if key not in _UPDATABLE:
            raise ValueError(f"not an updatable job column: {key}")
        sets.append(f"{key} = ?")
        if key == "parameter_definitions":
            value = _dumps(value)
        elif key == "archived":
            value = int(bool(value))
        params.append(value)
    sets.append("updated_at = ?")
    params += [now, job_id]
    conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", params)


def script_add(conn: sqlite3.Connection, job_id: str, code: str, now: str) -> int:
    """Store ``code`` as the job's next script version and make it current; return the version."""
    row = conn.execute(
        "SELECT COALESCE(MAX(version), 0) AS v FROM job_scripts WHERE job_id = ?", (job_id,)
    ).fetchone()
    version = int(row["v"]) + 1
    conn.execute(
        "INSERT INTO job_scripts (job_id, version, code, created_at) VALUES (?, ?, ?, ?)",
        (job_id, version, code, now),
    )
    conn.execute(
        "UPDATE jobs SET script_version = ?, updated_at = ? WHERE id = ?", (version, now, job_id)
    )
    return version


def script_get(conn: sqlite3.Connection, job_id: str, version: int) -> str | None:
    """The code of one version of a job's script."""
    row = conn.execute(
        "SELECT code FROM job_scripts WHERE job_id = ? AND version = ?", (job_id, version)
    ).fetchone()
    return str(row["code"]) if row else None


# -- triggers ------------------------------------------------------------------------------


def next_fire_at(conditions: Mapping[str, Any], after: float) -> str | None:
    """When a schedule with these (validated) conditions fires next, in the stored form."""
    try:
        schedule = CronSchedule.parse(conditions["cron"], conditions["timezone"])
        return iso(schedule.next_after(after))
    except CronError:
        return None


def trigger_set(
    conn: sqlite3.Connection,
    *,
    job_id: str,
    org_id: str,
    category: str,
    instrument_id: str | None,
    conditions: dict[str, Any] | None,
    clock: float,
    now: str,
) -> None:
    """Create or replace a job's trigger (keeping its id when it had one)."""
    existing = trigger_of(conn, job_id)
    trigger_id = existing.id if existing is not None else records.new_id()
    source = (conditions or {}).get("source_job_id") if category == "job_completed" else None
    due = next_fire_at(conditions or {}, clock) if category == "schedule" else None
    conn.execute(
        "INSERT INTO job_triggers (id, job_id, org_id, category, instrument_id, conditions, "
        "source_job_id, next_fire_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (job_id) DO UPDATE SET category = excluded.category, "
        "instrument_id = excluded.instrument_id, conditions = excluded.conditions, "
        "source_job_id = excluded.source_job_id, next_fire_at = excluded.next_fire_at",
        (
            trigger_id,
            job_id,
            org_id,
            category,
            instrument_id,
            _dumps(conditions),
            source,
            due,
            now,
        ),
    )


def trigger_delete(conn: sqlite3.Connection, job_id: str) -> None:
    """Remove a job's trigger, if it has one."""
    conn.execute("DELETE FROM job_triggers WHERE job_id = ?", (job_id,))


# -- executions ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ExecutionRecord:
    """An execution, platform or off-platform, with its job's name."""

    id: str
    org_id: str
    job_id: str
    job_name: str
    status: str
    off_platform: bool
    created_at: str
    started_at: str | None
    completed_at: str | None
    script_version: int | None
    file_ids: list[str] | None
    parameters: dict[str, Any] | None
    trigger_info: dict[str, Any] | None
    lineage: list[str]
    timeout_seconds: float | None
    exit_code: int | None
    rowid: int


_EXECUTION_SELECT = (
    "SELECT e.rowid AS rowid, e.id, e.org_id, e.job_id, j.name AS job_name, e.status, "
    "e.off_platform, e.created_at, e.started_at, e.completed_at, e.script_version, e.file_ids, "
    "e.parameters, e.trigger_info, e.lineage, e.timeout_seconds, e.exit_code "
    "FROM job_executions e JOIN jobs j ON j.id = e.job_id"
)


def _execution(row: sqlite3.Row) -> ExecutionRecord:
    return ExecutionRecord(
        id=row["id"],
        org_id=row["org_id"],
        job_id=row["job_id"],
        job_name=row["job_name"],
        status=row["status"],
        off_platform=bool(row["off_platform"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        script_version=row["script_version"],
        file_ids=_loads(row["file_ids"]),
        parameters=_loads(row["parameters"]),
        trigger_info=_loads(row["trigger_info"]),
        lineage=_loads(row["lineage"]) or [],
        timeout_seconds=row["timeout_seconds"],
        exit_code=row["exit_code"],
        rowid=int(row["rowid"]),
    )


def execution_get(
    conn: sqlite3.Connection, execution_id: str, org_id: str | None = None
) -> ExecutionRecord | None:
    """An execution by id (of the given organisation, or of any)."""
    if org_id is None:
        row = conn.execute(f"{_EXECUTION_SELECT} WHERE e.id = ?", (execution_id,)).fetchone()
    else:
        row = conn.execute(
            f"{_EXECUTION_SELECT} WHERE e.id = ? AND e.org_id = ?", (execution_id, org_id)
        ).fetchone()
    return _execution(row) if row else None


def execution_list(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    job_id: str | None,
    status: str | None,
    after: tuple[str, int] | None,
    limit: int,
) -> list[ExecutionRecord]:
    """Executions, newest first (creation time, then insertion order), after a cursor."""
    where = ["e.org_id = ?"]
    params: list[Any] = [org_id]
    if job_id is not None:
        where.append("e.job_id = ?")
        params.append(job_id)
    if status is not None:
        where.append("e.status = ?")
        params.append(status)
    if after is not None:
        where.append("(e.created_at, e.rowid) < (?, ?)")
        params += [after[0], after[1]]
    params.append(limit)
    rows = conn.execute(
        f"{_EXECUTION_SELECT} WHERE {' AND '.join(where)} "
        "ORDER BY e.created_at DESC, e.rowid DESC LIMIT ?",
        params,
    ).fetchall()
    return [_execution(row) for row in rows]


def execution_logs(
    conn: sqlite3.Connection, org_id: str, execution_id: str
) -> tuple[str, bool] | None:
    """``(logs, truncated)`` of an execution, or ``None`` when there is no such execution."""
    row = conn.execute(
        "SELECT logs, logs_truncated FROM job_executions WHERE id = ? AND org_id = ?",
        (execution_id, org_id),
    ).fetchone()
    if row is None:
        return None
    return (row["logs"] or "", bool(row["logs_truncated"]))


def enqueue(
    conn: sqlite3.Connection,
    job: JobRecord,
    *,
    file_ids: Sequence[str],
    parameters: Mapping[str, Any],
    trigger_info: Mapping[str, Any] | None,
    lineage: Sequence[str],
    timeout_seconds: float,
    now: str,
) -> str:
    """Queue a platform execution of the job's current script; return its id."""
    execution_id = records.new_id()
    conn.execute(
        "INSERT INTO job_executions (id, org_id, job_id, status, off_platform, created_at, "
        "script_version, file_ids, parameters, trigger_info, lineage, timeout_seconds) "
        "VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?)",
        (
            execution_id,
            job.org_id,
            job.id,
            now,
            job.script_version,
            _dumps(list(file_ids)),
            _dumps(dict(parameters)),
            _dumps(dict(trigger_info) if trigger_info is not None else None),
            _dumps(list(lineage)),
            timeout_seconds,
        ),
    )
    return execution_id


@attrs.frozen(kw_only=True)
class InputFile:
    """An input file of a claimed execution, as stored."""

    id: str
    file_name: str
    generation: int


@attrs.frozen(kw_only=True)
class Claim:
    """Everything the runner needs to start an execution it has just moved to ``running``."""

    execution_id: str
    org_id: str
    job_id: str
    code: str | None
    files: list[InputFile]
    missing_files: list[str]
    parameters: dict[str, Any]
    timeout_seconds: float
    api_key: str


def claim_next(
    conn: sqlite3.Connection, *, clock: float, default_timeout: float, key_grace: float
) -> Claim | None:
    """Start the oldest queued platform execution: mark it running and create its key.

    The key (read and write, bound to the execution) also expires ``key_grace`` seconds after
    the execution's time limit, as a backstop; it stops working as soon as the execution ends.
    """
    row = conn.execute(
        "SELECT id FROM job_executions WHERE status = 'queued' AND off_platform = 0 "
        "ORDER BY created_at, rowid LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    execution = execution_get(conn, row["id"])
    assert execution is not None
    now = iso(clock)
    conn.execute(
        "UPDATE job_executions SET status = 'running', started_at = ? WHERE id = ?",
        (now, execution.id),
    )
    timeout = execution.timeout_seconds or default_timeout
    key = auth.create_key(
        conn,
        org_id=execution.org_id,
        scopes=("read", "write"),
        now=clock,
        expires_at=clock + timeout + key_grace,
        job_execution_id=execution.id,
    )
    code = (
        script_get(conn, execution.job_id, execution.script_version)
        if execution.script_version
        else None
    )
    files: list[InputFile] = []
    missing: list[str] = []
    for file_id in execution.file_ids or []:
        found = records.file_get(conn, file_id, execution.org_id)
        if found is None or found.status != "confirmed":
            missing.append(file_id)
        else:
            files.append(
                InputFile(id=found.id, file_name=found.file_name, generation=found.generation)
            )
    return Claim(
        execution_id=execution.id,
        org_id=execution.org_id,
        job_id=execution.job_id,
        code=code,
        files=files,
        missing_files=missing,
        parameters=execution.parameters or {},
        timeout_seconds=timeout,
        api_key=key,
    )


def fail_unfinished(conn: sqlite3.Connection, *, now: str, reason: str) -> list[str]:
    """Fail every queued or running platform execution with ``reason`` as a last log line.

    Used when the server starts (executions a previous process left behind can never finish) and
    when it stops. Returns their ids.
    """
    rows = conn.execute(
        "SELECT id FROM job_executions WHERE off_platform = 0 AND status IN ('queued', 'running')"
    ).fetchall()
    ids = [str(row["id"]) for row in rows]
    line = f"[labric] {reason}\n"
    conn.executemany(
        "UPDATE job_executions SET status = 'failed', completed_at = ?, "
        "logs = CASE WHEN logs IS NULL OR logs = '' OR substr(logs, -1) = char(10) "
        "THEN COALESCE(logs, '') || ? ELSE logs || char(10) || ? END WHERE id = ?",
        [(now, line, line, i) for i in ids],
    )
    return ids

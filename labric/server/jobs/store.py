"""Data access for jobs, scripts, triggers and platform executions.

Like :mod:`labric.server.records`, every function takes the connection first and runs inside the
transaction :meth:`labric.server.db.Database.run` opened, so a caller composes several into one
atomic step. The trigger functions (``fire_*``) decide *and* enqueue in the caller's transaction:
the upload's confirmation, or an execution's end, and the runs they start are committed together
or not at all when composed that way.

Executions move ``queued`` -> ``running`` -> ``completed`` | ``failed``. Only
:func:`claim_next` starts one (and creates its ephemeral key in the same step); only
:func:`finish_platform` and :func:`fail_unfinished` end one. The key needs no revoking: it is
accepted only while its execution is ``running`` (and expires anyway shortly after the
execution's time limit).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from labric.server import auth, records
from labric.server.db import from_iso, iso
from labric.server.jobs import triggers
from labric.server.jobs.cron import CronError, CronSchedule
from labric.server.jobs.params import resolve_parameters

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
    "finish_platform",
    "fire_file_uploaded",
    "fire_job_completed",
    "fire_schedules",
    "job_by_name",
    "job_get",
    "job_insert",
    "job_list",
    "job_update",
    "next_fire_at",
    "script_add",
    "script_get",
    "trigger_delete",
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


def _trigger_of(conn: sqlite3.Connection, job_id: str) -> TriggerRecord | None:
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


def _job(conn: sqlite3.Connection, row: sqlite3.Row, with_code: bool) -> JobRecord:
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
        trigger=_trigger_of(conn, row["id"]),
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
    return _job(conn, row, with_code) if row else None


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
        where.append("(created_at < ? OR (created_at = ? AND rowid < ?))")
        params += [after[0], after[0], after[1]]
    params.append(limit)
    rows = conn.execute(
        f"SELECT rowid, * FROM jobs WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
        params,
    ).fetchall()
    return [_job(conn, row, False) for row in rows]


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
    existing = _trigger_of(conn, job_id)
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
        where.append("(e.created_at < ? OR (e.created_at = ? AND e.rowid < ?))")
        params += [after[0], after[0], after[1]]
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


def finish_platform(
    conn: sqlite3.Connection,
    execution_id: str,
    *,
    status: str,
    exit_code: int | None,
    logs: str,
    truncated: bool,
    clock: float,
    default_timeout: float,
) -> list[str]:
    """End a running platform execution and fire ``job_completed`` triggers.

    Its key stops working at once: the authentication middleware refuses a job execution's key
    unless the execution is running, with a message saying it ended.

    Returns:
        The ids of the executions the triggers queued.
    """
    now = iso(clock)
    cur = conn.execute(
        "UPDATE job_executions SET status = ?, completed_at = ?, exit_code = ?, logs = ?, "
        "logs_truncated = ? WHERE id = ? AND status = 'running'",
        (status, now, exit_code, logs, int(truncated), execution_id),
    )
    if cur.rowcount == 0:
        return []
    return fire_job_completed(conn, execution_id, clock=clock, default_timeout=default_timeout)


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


# -- firing triggers -----------------------------------------------------------------------


def _chain_of(conn: sqlite3.Connection, execution_id: str | None) -> list[str]:
    """The chain of jobs behind what an execution produced: its own chain, then its job."""
    if execution_id is None:
        return []
    execution = execution_get(conn, execution_id)
    if execution is None:
        return []
    return [*execution.lineage, execution.job_id]


def _runnable(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(
        "SELECT rowid, * FROM jobs WHERE id = ? AND archived = 0 AND script_version > 0",
        (job_id,),
    ).fetchone()
    return _job(conn, row, False) if row else None


def _start_triggered(
    conn: sqlite3.Connection,
    job: JobRecord,
    trigger: TriggerRecord,
    *,
    chain: list[str],
    file_ids: Sequence[str],
    extra: Mapping[str, Any],
    default_timeout: float,
    now: str,
) -> str | None:
    if job.id in chain or len(chain) >= triggers.MAX_CHAIN:
        return None
    parameters, _ = resolve_parameters(job.parameter_definitions, None, manual=False)
    info = {
        "category": trigger.category,
        "trigger_id": trigger.id,
        "file_id": None,
        "source_execution_id": None,
        "scheduled_for": None,
        **extra,
    }
    return enqueue(
        conn,
        job,
        file_ids=file_ids,
        parameters=parameters,
        trigger_info=info,
        lineage=chain,
        timeout_seconds=job.timeout_seconds or default_timeout,
        now=now,
    )


def fire_file_uploaded(
    conn: sqlite3.Connection,
    file_id: str,
    *,
    uploader_execution_id: str | None,
    default_timeout: float,
    now: str,
) -> list[str]:
    """Queue a run of every job whose ``file_uploaded`` trigger matches a confirmed file.

    Args:
        file_id: The file just confirmed.
        uploader_execution_id: The execution whose ephemeral key uploaded it, if any (its chain
            counts even when the file names another execution or only an instrument).
    """
    row = records.file_get(conn, file_id)
    if row is None or row.status != "confirmed":
        return []
    chain = _chain_of(conn, uploader_execution_id or row.job_execution_id)
    if uploader_execution_id and row.job_execution_id not in (None, uploader_execution_id):
        chain = [*chain, *_chain_of(conn, row.job_execution_id)]
    facts = triggers.FileFacts(
        original_path=row.original_path,
        file_name=row.file_name,
        source_type=row.source_type,
        instrument_id=row.instrument_id,
        size_kilobytes=math.ceil((row.size_bytes or 0) / 1024),
    )
    started = []
    for trigger_row in conn.execute(
        "SELECT job_id FROM job_triggers WHERE org_id = ? AND category = 'file_uploaded' "
        "ORDER BY created_at, id",
        (row.org_id,),
    ).fetchall():
        job = _runnable(conn, trigger_row["job_id"])
        if job is None or job.trigger is None:
            continue
        if not triggers.file_matches(
            job.trigger.conditions or {}, job.trigger.instrument_id, facts
        ):
            continue
        execution_id = _start_triggered(
            conn,
            job,
            job.trigger,
            chain=chain,
            file_ids=[row.id],
            extra={"file_id": row.id},
            default_timeout=default_timeout,
            now=now,
        )
        if execution_id is not None:
            started.append(execution_id)
    return started


def fire_job_completed(
    conn: sqlite3.Connection, execution_id: str, *, clock: float, default_timeout: float
) -> list[str]:
    """Queue the runs that ``job_completed`` triggers start for an execution that just ended."""
    source = execution_get(conn, execution_id)
    if source is None or source.status not in ("completed", "failed"):
        return []
    now = iso(clock)
    chain = [*source.lineage, source.job_id]
    outputs = [
        str(r["id"])
        for r in conn.execute(
            "SELECT id FROM files WHERE job_execution_id = ? AND status = 'confirmed' "
            "ORDER BY created_at, seq",
            (source.id,),
        )
    ]
    started = []
    for trigger_row in conn.execute(
        "SELECT job_id FROM job_triggers WHERE source_job_id = ? AND category = 'job_completed' "
        "AND org_id = ? ORDER BY created_at, id",
        (source.job_id, source.org_id),
    ).fetchall():
        job = _runnable(conn, trigger_row["job_id"])
        if job is None or job.trigger is None:
            continue
        if source.status not in triggers.completed_statuses(job.trigger.conditions):
            continue
        new_id = _start_triggered(
            conn,
            job,
            job.trigger,
            chain=chain,
            file_ids=outputs,
            extra={"source_execution_id": source.id},
            default_timeout=default_timeout,
            now=now,
        )
        if new_id is not None:
            started.append(new_id)
    return started


def fire_schedules(conn: sqlite3.Connection, *, clock: float, default_timeout: float) -> list[str]:
    """Queue a run of every schedule that is due at ``clock``, and move each to its next time.

    A schedule that was due several times since it last fired (the server was down, or the
    clock jumped) runs once, for its latest due time.
    """
    now = iso(clock)
    started = []
    due = conn.execute(
        "SELECT job_id FROM job_triggers WHERE category = 'schedule' AND next_fire_at IS NOT NULL "
        "AND next_fire_at <= ? ORDER BY next_fire_at, id",
        (now,),
    ).fetchall()
    for trigger_row in due:
        trigger = _trigger_of(conn, trigger_row["job_id"])
        if trigger is None or trigger.next_fire_at is None:
            continue
        conditions = trigger.conditions or {}
        scheduled = trigger.next_fire_at
        try:
            schedule = CronSchedule.parse(conditions["cron"], conditions["timezone"])
            # The latest due time not after now (catch-up runs collapse into one).
            latest = from_iso(scheduled)
            following = schedule.next_after(latest)
            while following <= clock:
                latest, following = following, schedule.next_after(following)
            scheduled, upcoming = iso(latest), iso(following)
        except (CronError, KeyError):
            upcoming = None
        conn.execute(
            "UPDATE job_triggers SET next_fire_at = ? WHERE id = ?", (upcoming, trigger.id)
        )
        job = _runnable(conn, trigger.job_id)
        if job is None:
            continue
        execution_id = _start_triggered(
            conn,
            job,
            trigger,
            chain=[],
            file_ids=[],
            extra={"scheduled_for": scheduled},
            default_timeout=default_timeout,
            now=now,
        )
        if execution_id is not None:
            started.append(execution_id)
    return started

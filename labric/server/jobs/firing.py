"""Firing triggers: what a confirmed upload, an execution's end or a due schedule starts.

Like :mod:`labric.server.jobs.store`, every function takes the connection first and runs in the
caller's transaction, so the event (the upload's confirmation, or an execution's end) and the
runs it starts are committed together or not at all. :func:`finish_platform` ends a platform
execution and fires its ``job_completed`` triggers in one step.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from labric.server.core import records
from labric.server.core.db import from_iso, iso
from labric.server.jobs import triggers
from labric.server.jobs.cron import CronError, CronSchedule
from labric.server.jobs.params import resolve_parameters
from labric.server.jobs.store import (
    JobRecord,
    TriggerRecord,
    enqueue,
    execution_get,
    job_from_row,
    trigger_of,
)

__all__ = ["finish_platform", "fire_file_uploaded", "fire_job_completed", "fire_schedules"]


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
    return job_from_row(conn, row, False) if row else None


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
        trigger = trigger_of(conn, trigger_row["job_id"])
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

"""The server's metadata store: one SQLite database, owned by one thread, migrated in order.

Threading model
    A :class:`Database` owns exactly one ``sqlite3.Connection`` and one thread; the connection is
    created in that thread and only ever used there. Every operation is a plain function
    ``fn(conn, *args)`` queued to the thread (:meth:`Database.run` from the event loop,
    :meth:`Database.run_sync` from any other thread). The thread runs operations one at a time,
    in submission order, so a read-modify-write done inside one function is atomic with respect
    to every other request of this process; its ``BEGIN IMMEDIATE`` lock serialises it against
    other processes sharing the data directory (``labric keys create`` while a server runs), with
    a busy timeout.

Group commit
    The thread takes every operation waiting in its queue (up to ``max_batch``) and runs them in one
    transaction and commits once. An operation that raises is undone alone: one that wrote nothing
    needs no undoing; when one raises after writing, the transaction is rolled back and the batch
    run again with a savepoint around each operation (so an operation must act through ``conn``
    only: it may be run twice before its outcome is delivered). No caller sees its outcome before
    that commit has returned, so nothing is answered on the strength of a write that could still be
    rolled back; each batch wakes each waiting event loop once, not once per operation.

    Commits use ``synchronous=NORMAL``: the WAL is written, not synced. A *durable* operation's
    outcome is held back until a second thread, the WAL syncer, has ``fdatasync``-ed the WAL
    after its commit: exactly what ``synchronous=FULL`` does for each commit, but one sync
    covers every durable commit made while the previous sync ran, and nothing else waits for
    it (the database thread goes on with the next batch meanwhile). A commit that a checkpoint
    has already moved into the database file is durable there (SQLite syncs the database file
    after each checkpoint, and the WAL before it). Where SQLite could not use a WAL, a batch
    holding a durable operation commits with ``synchronous=FULL`` instead.

Invariants
    * ``PRAGMA foreign_keys=ON`` on every connection; WAL journal; ``synchronous=NORMAL`` (a power
      cut may lose the last commits but never corrupts the database; blob bytes are fsynced by
      :mod:`labric.server.core.blobs` before any row points at them). :meth:`Database.run_durable`
      syncs its own commit, for the few steps whose loss a power cut must not allow.
    * The schema version lives in ``schema_version``. :data:`MIGRATIONS` is append-only: a
      release adds migrations at the end and never edits a published one. A database written by
      a newer release (a version above the last known migration) is refused rather than guessed at.
    * Timestamps are stored as fixed-width UTC ISO 8601 strings (``2025-01-02T03:04:05.000006Z``),
      which sort lexicographically in time order and round-trip exactly.

Failure behaviour
    An exception raised by an operation undoes what it wrote (and nothing of the other
    operations in its batch) and propagates to its caller unchanged; the rest of the batch
    commits. When the transaction as a whole fails (the commit itself, or an error after
    which SQLite rolled everything back, such as a full disk), every operation of the batch
    fails with that error: none of them is stored. Closing lets the operations already queued
    finish, then closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "DEFAULT_MAX_BATCH",
    "MIGRATIONS",
    "Database",
    "DatabaseError",
    "Migration",
    "from_iso",
    "iso",
    "migrate",
]

T = TypeVar("T")

logger = logging.getLogger("labric.server")

_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: ``fdatasync`` where the platform has it (not macOS), else ``fsync``.
datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

#: The most operations the database thread runs in one transaction.
DEFAULT_MAX_BATCH = 128


def iso(ts: float) -> str:
    """Format a Unix timestamp as the stored (and wire) UTC ISO 8601 form."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    # strftime's %Y does not pad years before 1000 on every platform ("1-01-01"), which
    # from_iso could not read back and which would sort wrongly as text.
    return f"{moment.year:04d}" + moment.strftime(_ISO_FORMAT[2:])


def from_iso(text: str) -> float:
    """Parse a stored timestamp back into a Unix timestamp."""
    return datetime.strptime(text, _ISO_FORMAT).replace(tzinfo=UTC).timestamp()


class DatabaseError(Exception):
    """The data directory's database cannot be used (e.g. written by a newer release)."""


class Migration(NamedTuple):
    """One schema step: ``version`` (1, 2, ...), a short ``name`` and the SQL to run."""

    version: int
    name: str
    sql: str


_INITIAL_SCHEMA = """
CREATE TABLE organisations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE instruments (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX instruments_org ON instruments(org_id);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    description     TEXT,
    archived        INTEGER NOT NULL DEFAULT 0,
    publish_status  TEXT NOT NULL DEFAULT 'draft',
    created_at      TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE job_executions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    status        TEXT NOT NULL,
    off_platform  INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    completed_at  TEXT,
    timeout_at    TEXT
);
CREATE INDEX job_executions_org_job ON job_executions(org_id, job_id);
CREATE INDEX job_executions_timeout ON job_executions(status, timeout_at)
    WHERE timeout_at IS NOT NULL;

CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,
    prefix            TEXT NOT NULL UNIQUE,
    secret_hash       TEXT NOT NULL,
    org_id            TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    scopes            TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    expires_at        TEXT,
    revoked           INTEGER NOT NULL DEFAULT 0,
    job_execution_id  TEXT REFERENCES job_executions(id) ON DELETE CASCADE
);

-- seq orders files that share a created_at (newest first, stable); id is the public id.
CREATE TABLE files (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    org_id            TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    file_name         TEXT NOT NULL,
    original_path     TEXT NOT NULL,
    content_type      TEXT NOT NULL,
    size_bytes        INTEGER,
    crc32c            TEXT,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
    source_type       TEXT NOT NULL,
    instrument_id     TEXT REFERENCES instruments(id) ON DELETE SET NULL,
    job_execution_id  TEXT REFERENCES job_executions(id) ON DELETE SET NULL,
    created_at        TEXT NOT NULL,
    confirmed_at      TEXT,
    part_size         INTEGER,
    expected_size     INTEGER,
    expected_crc32c   TEXT,
    -- 0 while no object is stored; else the generation naming the object's blob.
    generation        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX files_listing ON files(org_id, status, created_at, seq);
CREATE INDEX files_instrument ON files(org_id, instrument_id, status);
CREATE INDEX files_pending_path ON files(org_id, instrument_id, original_path)
    WHERE status = 'pending';

CREATE TABLE upload_parts (
    file_id     TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    crc32c      TEXT NOT NULL,
    -- names the part's blob; a re-sent part gets a new generation.
    generation  INTEGER NOT NULL,
    PRIMARY KEY (file_id, number)
);

CREATE TABLE idempotency (
    key_id      TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    idem_key    TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    body        BLOB NOT NULL,
    headers     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (key_id, idem_key, method, path)
);
CREATE INDEX idempotency_age ON idempotency(created_at);
"""

_DATASETS_SCHEMA = """
-- The ledger of committed data writes (POST /v1/data/write), one row per request, under the job
-- execution it was recorded in. The rows themselves live in the organisation's own dataset
-- database (datasets/<org_id>.sqlite3), which also tracks exactly which rows each execution
-- created; this ledger keeps what revert cannot undo (updates, deletes, series replaced on
-- parents the execution did not create), so revert can report it as warnings.
CREATE TABLE dataset_writes (
    id                TEXT PRIMARY KEY,
    org_id            TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    job_execution_id  TEXT NOT NULL REFERENCES job_executions(id) ON DELETE CASCADE,
    created_at        TEXT NOT NULL,
    -- JSON: {"tables": [{table, mode, created, updated, deleted, cascade_deleted}],
    --        "series": [{table, parents, parents_not_created, points_written, points_replaced}]}
    summary           TEXT NOT NULL,
    reverted_at       TEXT
);
CREATE INDEX dataset_writes_execution ON dataset_writes(job_execution_id);
"""

_JOBS_SCHEMA = """
-- Jobs: the current script version (0: no script, e.g. a job made for off-platform runs),
-- parameter definitions (a JSON list) and a default time limit for platform runs.
ALTER TABLE jobs ADD COLUMN script_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN parameter_definitions TEXT;
ALTER TABLE jobs ADD COLUMN timeout_seconds INTEGER;
ALTER TABLE jobs ADD COLUMN updated_at TEXT;
CREATE INDEX jobs_listing ON jobs(org_id, archived, created_at);

-- Every version of every script; executions keep the version they ran.
CREATE TABLE job_scripts (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    code        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (job_id, version)
);

-- At most one trigger per job. instrument_id has no foreign key on purpose: a trigger restricted
-- to an instrument that is later deleted must match nothing, not everything.
CREATE TABLE job_triggers (
    id             TEXT PRIMARY KEY,
    job_id         TEXT NOT NULL UNIQUE REFERENCES jobs(id) ON DELETE CASCADE,
    org_id         TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    category       TEXT NOT NULL,
    instrument_id  TEXT,
    conditions     TEXT,
    -- job_completed: the source job (copied out of conditions for the lookup)
    source_job_id  TEXT,
    -- schedule: when it fires next (stored UTC form)
    next_fire_at   TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX job_triggers_category ON job_triggers(org_id, category);
CREATE INDEX job_triggers_source ON job_triggers(source_job_id) WHERE source_job_id IS NOT NULL;
CREATE INDEX job_triggers_due ON job_triggers(next_fire_at) WHERE next_fire_at IS NOT NULL;

-- Platform executions: what they run (script version, input files, parameters), what started
-- them (trigger_info, JSON; NULL for manual and off-platform runs), the chain of jobs that led
-- to them (lineage, a JSON list of job ids), their time limit, exit code and captured logs.
ALTER TABLE job_executions ADD COLUMN script_version INTEGER;
ALTER TABLE job_executions ADD COLUMN file_ids TEXT;
ALTER TABLE job_executions ADD COLUMN parameters TEXT;
ALTER TABLE job_executions ADD COLUMN trigger_info TEXT;
ALTER TABLE job_executions ADD COLUMN lineage TEXT;
ALTER TABLE job_executions ADD COLUMN timeout_seconds REAL;
ALTER TABLE job_executions ADD COLUMN exit_code INTEGER;
ALTER TABLE job_executions ADD COLUMN logs TEXT;
ALTER TABLE job_executions ADD COLUMN logs_truncated INTEGER NOT NULL DEFAULT 0;
CREATE INDEX job_executions_queue ON job_executions(status, created_at) WHERE off_platform = 0;
CREATE INDEX job_executions_listing ON job_executions(org_id, created_at);
"""

_UPLOAD_FILE_SCHEMA = """
-- A multipart upload writes every part in place into one file of the planned size,
-- uploads/<file_id>.<upload_generation> (0: no such file yet). upload_parts.generation now holds
-- the upload_generation its part was written into. Parts recorded under the one-file-per-part
-- layout are forgotten: their uploads resume by sending them again.
ALTER TABLE files ADD COLUMN upload_generation INTEGER NOT NULL DEFAULT 0;
DELETE FROM upload_parts;
"""

_DASHBOARDS_SCHEMA = """
-- Dashboards: a name, a description and the widgets (a JSON list, validated by
-- labric.server.dashboards.store before it is stored).
-- seq orders dashboards that share a created_at.
CREATE TABLE dashboards (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    org_id       TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT,
    widgets      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX dashboards_listing ON dashboards(org_id, created_at, seq);
"""

_INSTRUMENTS_EXPERIMENTS_SCHEMA = """
-- Instruments: what the platform table core_instrument mirrors, and when a device last paired.
ALTER TABLE instruments ADD COLUMN description TEXT;
ALTER TABLE instruments ADD COLUMN metadata TEXT;
ALTER TABLE instruments ADD COLUMN updated_at TEXT;
ALTER TABLE instruments ADD COLUMN paired_at TEXT;
CREATE INDEX instruments_listing ON instruments(org_id, created_at);

-- One-time pairing codes (only their hash). A code is spent once; idem_hash remembers the
-- Idempotency-Key of the exchange that spent it, so a retried exchange can still answer.
CREATE TABLE instrument_pairings (
    code_hash      TEXT PRIMARY KEY,
    instrument_id  TEXT NOT NULL REFERENCES instruments(id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    used_at        TEXT,
    idem_hash      TEXT,
    key_id         TEXT
);
CREATE INDEX instrument_pairings_instrument ON instrument_pairings(instrument_id);

-- A paired device's key belongs to its instrument (and goes with it).
ALTER TABLE api_keys ADD COLUMN instrument_id TEXT REFERENCES instruments(id) ON DELETE CASCADE;

-- Device status as periods, kept current as reports arrive (see routes/instruments.py):
-- consecutive reports of one status extend a period; a silence longer than the offline
-- threshold is stored as an offline period (synthetic = 1) covering the gap.
CREATE TABLE device_periods (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    instrument_id  TEXT NOT NULL REFERENCES instruments(id) ON DELETE CASCADE,
    status         TEXT NOT NULL,
    app_version    TEXT,
    is_watching    INTEGER,
    synthetic      INTEGER NOT NULL DEFAULT 0,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL
);
CREATE INDEX device_periods_window ON device_periods(instrument_id, last_seen);

-- Experiments (mirrored into the platform table core_experiment), and their files.
CREATE TABLE experiments (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT,
    status       TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '[]',
    metadata     TEXT NOT NULL DEFAULT '{}',
    started_at   TEXT,
    ended_at     TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX experiments_listing ON experiments(org_id, created_at);

CREATE TABLE experiment_files (
    experiment_id  TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    file_id        TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (experiment_id, file_id)
);
CREATE INDEX experiment_files_file ON experiment_files(file_id);
"""

_LISTING_INDEXES_SCHEMA = """
-- Every listing seeks: WHERE <equalities> AND (created_at, seq) < (?, ?) ORDER BY created_at DESC,
-- seq DESC reads an index that starts with the equalities and ends in (created_at, seq), so a
-- page costs the same at any depth (rowid tables end every index in their rowid implicitly).
-- Each filter a listing route offers gets one, so a filtered listing does not walk the rest.
DROP INDEX files_instrument;
CREATE INDEX files_instrument ON files(org_id, instrument_id, status, created_at, seq);
CREATE INDEX jobs_all ON jobs(org_id, created_at);
DROP INDEX job_executions_org_job;
CREATE INDEX job_executions_job ON job_executions(org_id, job_id, created_at);
CREATE INDEX job_executions_status ON job_executions(org_id, status, created_at);
CREATE INDEX experiments_status ON experiments(org_id, status, created_at);

-- An experiment lists its files in the files' own order: the link keeps the file's position
-- (created_at and seq never change) so that order is an index too.
ALTER TABLE experiment_files ADD COLUMN file_created_at TEXT;
ALTER TABLE experiment_files ADD COLUMN file_seq INTEGER;
UPDATE experiment_files SET (file_created_at, file_seq) =
    (SELECT created_at, seq FROM files WHERE files.id = experiment_files.file_id);
CREATE INDEX experiment_files_listing
    ON experiment_files(experiment_id, file_created_at, file_seq);
"""

_NOTIFICATIONS_SCHEMA = """
-- The inbox. A dedupe_key is the caller's idempotency key: one delivered notification per key
-- and organisation. api_key_id attributes the send (a deleted key leaves its notifications).
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    title        TEXT NOT NULL,
    body         TEXT,
    action_url   TEXT,
    data         TEXT NOT NULL DEFAULT '{}',
    dedupe_key   TEXT NOT NULL,
    api_key_id   TEXT,
    created_at   TEXT NOT NULL,
    UNIQUE (org_id, dedupe_key)
);
CREATE INDEX notifications_listing ON notifications(org_id, created_at);

-- Per-organisation settings of the notifications route (a missing row: not muted).
CREATE TABLE notification_settings (
    org_id  TEXT PRIMARY KEY REFERENCES organisations(id) ON DELETE CASCADE,
    muted   INTEGER NOT NULL DEFAULT 0
);
"""

_AGENT_CHATS_SCHEMA = """
-- Saved agent chats (save=true), and their turns in order. context holds what the agent carries
-- to the next turn (the table it last talked about).
CREATE TABLE agent_chats (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    api_key_id  TEXT,
    title       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX agent_chats_org ON agent_chats(org_id, updated_at);
CREATE TABLE agent_turns (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     TEXT NOT NULL REFERENCES agent_chats(id) ON DELETE CASCADE,
    prompt      TEXT NOT NULL,
    output      TEXT NOT NULL,
    tool_calls  TEXT NOT NULL DEFAULT '[]',
    context     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE INDEX agent_turns_chat ON agent_turns(chat_id, seq);
"""

_ML_MODELS_SCHEMA = """
-- A model is a name in its organisation; each training run is a version of it. The newest
-- version gives the model its status; the newest ready one serves predictions while no newer
-- version is pending or training. artifact names the trained model's file under ml_models/.
CREATE TABLE ml_models (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT,
    task_type    TEXT NOT NULL,
    archived     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE INDEX ml_models_listing ON ml_models(org_id, archived, created_at);

CREATE TABLE ml_model_versions (
    id                     TEXT PRIMARY KEY,
    model_id               TEXT NOT NULL REFERENCES ml_models(id) ON DELETE CASCADE,
    version_number         INTEGER NOT NULL,
    status                 TEXT NOT NULL,
    dataset_id             TEXT NOT NULL,
    target_column          TEXT NOT NULL,
    feature_columns        TEXT NOT NULL,
    image_columns          TEXT NOT NULL DEFAULT '[]',
    problem_type           TEXT,
    quality_preset         TEXT NOT NULL,
    error_message          TEXT,
    evaluation_metrics     TEXT,
    artifact               TEXT,
    created_at             TEXT NOT NULL,
    training_started_at    TEXT,
    training_completed_at  TEXT,
    UNIQUE (model_id, version_number)
);
CREATE INDEX ml_model_versions_status ON ml_model_versions(status);
"""

_IMAGES_SCHEMA = """
-- Image annotations: labels (created on first use, one per name and organisation) and the masks
-- saved on image files. A mask's PNG lives in the blob directory (masks/<file_id>/<id>.png,
-- see labric.server.images.store); the row keeps what was measured from it. bbox_* are NULL
-- for a mask with no foreground. seq orders masks saved in the same instant (oldest first).
CREATE TABLE image_labels (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE image_annotations (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    org_id               TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    file_id              TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    label_id             TEXT NOT NULL REFERENCES image_labels(id) ON DELETE CASCADE,
    width                INTEGER NOT NULL,
    height               INTEGER NOT NULL,
    is_human_vetted      INTEGER NOT NULL,
    foreground_fraction  REAL NOT NULL,
    bbox_x               INTEGER,
    bbox_y               INTEGER,
    bbox_width           INTEGER,
    bbox_height          INTEGER,
    api_key_id           TEXT,
    job_execution_id     TEXT REFERENCES job_executions(id) ON DELETE SET NULL,
    created_at           TEXT NOT NULL
);
CREATE INDEX image_annotations_file ON image_annotations(file_id, created_at, seq);
CREATE INDEX image_annotations_execution ON image_annotations(job_execution_id)
    WHERE job_execution_id IS NOT NULL;
"""

#: Every schema step since the first release, in order. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "organisations, keys, instruments, jobs, executions, files, idempotency", _INITIAL_SCHEMA
    ),
    Migration(2, "datasets: the write ledger", _DATASETS_SCHEMA),
    Migration(3, "jobs: script versions, triggers, platform executions", _JOBS_SCHEMA),
    Migration(4, "files: multipart uploads written in place", _UPLOAD_FILE_SCHEMA),
    Migration(5, "dashboards", _DASHBOARDS_SCHEMA),
    Migration(
        6, "instruments: pairing, device status; experiments", _INSTRUMENTS_EXPERIMENTS_SCHEMA
    ),
    # Rows stored before it have no digest and match on method and path alone.
    Migration(
        7,
        "idempotency: a digest of the request each key answered",
        "ALTER TABLE idempotency ADD COLUMN digest TEXT;",
    ),
    # Keys made before it have no name; last_used_at is kept to the minute (see auth.touch).
    Migration(
        8,
        "keys: a name, and when each was last used",
        "ALTER TABLE api_keys ADD COLUMN name TEXT;\n"
        "ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;",
    ),
    Migration(9, "listings: an index for every listing and filter", _LISTING_INDEXES_SCHEMA),
    Migration(10, "notifications: the inbox and the mute setting", _NOTIFICATIONS_SCHEMA),
    Migration(11, "images: labels and annotation masks", _IMAGES_SCHEMA),
    Migration(12, "ml models and their versions", _ML_MODELS_SCHEMA),
    Migration(13, "agent: saved chats and their turns", _AGENT_CHATS_SCHEMA),
    # Parts recorded before it were synced before they were recorded.
    Migration(
        14,
        "upload parts: whether a part's bytes are synced yet",
        "ALTER TABLE upload_parts ADD COLUMN synced INTEGER NOT NULL DEFAULT 1;",
    ),
)


def _casefold(value: str | None) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def connect(path: Path) -> sqlite3.Connection:
    """Open the database at ``path`` with the server's settings and bring its schema up to date.

    The connection is in autocommit mode (transactions are explicit) and belongs to the calling
    thread.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        # Unicode-aware case folding for the files query (SQLite's lower() is ASCII only).
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration the database has not seen yet; return the resulting version.

    Raises:
        DatabaseError: the database was written by a newer release.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = 0
        else:
            current = int(row[0])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    latest = MIGRATIONS[-1].version
    if current > latest:
        raise DatabaseError(
            f"The database is at schema version {current}, newer than this release knows "
            f"({latest}); upgrade labric to use this data directory"
        )
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        try:
            # executescript runs the whole step, version bump included, as one transaction.
            conn.executescript(
                "BEGIN IMMEDIATE;\n"
                f"{migration.sql}\n"
                f"UPDATE schema_version SET version = {migration.version};\n"
                "COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        current = migration.version
    return current


class _Work:
    """One operation queued for the database thread, and where its outcome goes.

    Exactly one of ``loop`` (an awaiting coroutine's loop; ``future`` is an asyncio future of
    that loop) and ``sync`` (a blocked thread's future) is set.
    """

    __slots__ = ("args", "durable", "error", "fn", "future", "loop", "result", "sync")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        durable: bool,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
        sync: Future[Any] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.durable = durable
        self.loop = loop
        self.future = future
        self.sync = sync
        self.result: Any = None
        self.error: BaseException | None = None


def _deliver(batch: list[_Work]) -> None:
    """Hand a committed batch's outcomes to their awaiting coroutines (on their loop)."""
    for work in batch:
        future = work.future
        if future is None or future.done():
            continue  # the caller was cancelled meanwhile
        if work.error is not None:
            future.set_exception(work.error)
        else:
            future.set_result(work.result)


def _hand_over(batch: list[_Work]) -> None:
    """Give every outcome of ``batch`` to its caller: blocked threads directly, each event loop
    with one wake-up for all of its coroutines."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Work]] = {}
    for work in batch:
        if work.sync is not None:
            if work.error is not None:
                work.sync.set_exception(work.error)
            else:
                work.sync.set_result(work.result)
        elif work.loop is not None:
            by_loop.setdefault(work.loop, []).append(work)
        elif work.error is not None:
            logger.error(
                "A database operation nobody waited for failed: %s",
                getattr(work.fn, "__name__", work.fn),
                exc_info=work.error,
            )
    for loop, works in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits
            loop.call_soon_threadsafe(_deliver, works)


def _run_all(conn: sqlite3.Connection, batch: list[_Work], *, savepoints: bool) -> bool:
    """Run every operation of ``batch`` in the open transaction, each outcome kept on its work.

    Without ``savepoints`` (the common case: a savepoint costs two statements per operation),
    an operation that raises having written nothing needs no undoing; one that raises having
    written something stops the run (returns ``False``) so that the caller can start over with
    ``savepoints``, where each failing operation is rolled back to its own savepoint.

    Raises:
        BaseException: SQLite rolled the whole transaction back (the operation's error).
    """
    for work in batch:
        if savepoints:
            conn.execute("SAVEPOINT op")
        changes = conn.total_changes
        try:
            work.result = work.fn(conn, *work.args)
        except BaseException as exc:
            work.error = exc
            if not conn.in_transaction:
                raise  # e.g. a full disk: what the batch did before is gone too
            if savepoints:
                conn.execute("ROLLBACK TO op")
            elif conn.total_changes != changes:
                return False
        if savepoints:
            conn.execute("RELEASE op")
    return True


def _open_current(path: Path, fd: int) -> int:
    """A descriptor of the file now at ``path``: ``fd`` while it still is that file, else a
    new one (``fd`` is closed)."""
    if fd >= 0:
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    return os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))


class Database:
    """The metadata store, served by one dedicated thread (see the module docstring).

    Args:
        path: The SQLite file.
        max_batch: The most operations one transaction (one commit) takes.
    """

    def __init__(self, path: Path, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.path = path
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._sync_queue: queue.SimpleQueue[list[_Work] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        #: Commits made, operations they held and WAL syncs (for tests and benchmarks).
        self.commits = 0
        self.operations = 0
        self.syncs = 0

    def __repr__(self) -> str:
        return f"<Database {self.path}>"

    # -- the database thread ------------------------------------------------------------------

    def _serve(self, opened: Future[None]) -> None:
        try:
            conn = self._conn = connect(self.path)
            wal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        except BaseException as exc:
            opened.set_exception(exc)
            return
        syncer = None
        if wal:
            syncer = threading.Thread(target=self._sync_wal, name="labric-db-sync", daemon=True)
            syncer.start()
        opened.set_result(None)
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._run_batch(batch, wal=wal)
        finally:
            if syncer is not None:
                self._sync_queue.put(None)
                syncer.join()
            self._conn = None
            conn.close()

    def _run_batch(self, batch: list[_Work], *, wal: bool) -> None:
        """Run ``batch`` in one transaction, each operation in a savepoint of its own (so one
        that raises is undone alone), commit once, then deliver the outcomes: at once, except
        those of durable operations, which wait for the next sync of the WAL."""
        conn = self._conn
        assert conn is not None
        # Without a WAL (a file system SQLite could not use one on), the commit syncs itself.
        full = not wal and any(work.durable for work in batch)
        try:
            if full:
                conn.execute("PRAGMA synchronous=FULL")
            try:
                self._transaction(conn, batch)
            finally:
                if full:
                    conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException as exc:
            # The commit (or the transaction as a whole) failed: nothing of the batch is stored.
            for work in batch:
                if work.error is None:
                    work.error = exc
                    work.result = None
        self.commits += 1
        self.operations += len(batch)
        if not wal:
            _hand_over(batch)
            return
        now = [work for work in batch if not work.durable or work.error is not None]
        later = [work for work in batch if work.durable and work.error is None]
        _hand_over(now)
        if later:
            self._sync_queue.put(later)

    def _sync_wal(self) -> None:
        """The WAL syncer: ``fdatasync`` the WAL once for every durable commit waiting, then
        deliver their outcomes (see the module docstring)."""
        wal_path = Path(f"{self.path}-wal")
        fd = -1
        try:
            stop = False
            while not stop:
                first = self._sync_queue.get()
                if first is None:
                    break
                waiting = list(first)
                while True:
                    try:
                        more = self._sync_queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    waiting += more
                try:
                    try:
                        fd = _open_current(wal_path, fd)
                    except FileNotFoundError:
                        # No WAL (yet): every commit is in the database file itself.
                        fd = _open_current(self.path, fd)
                    datasync(fd)
                except OSError as exc:
                    for work in waiting:
                        work.error, work.result = exc, None
                self.syncs += 1
                _hand_over(waiting)
        finally:
            if fd >= 0:
                os.close(fd)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, batch: list[_Work]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _run_all(conn, batch, savepoints=False):
                # An operation wrote and then raised: undo everything and run the batch again,
                # each operation in a savepoint this time, so that only its own writes go.
                conn.execute("ROLLBACK")
                for work in batch:
                    work.result, work.error = None, None
                conn.execute("BEGIN IMMEDIATE")
                _run_all(conn, batch, savepoints=True)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- lifecycle ----------------------------------------------------------------------------

    def open_sync(self) -> None:
        """Start the thread and open (and migrate) the database, blocking until done."""
        with self._lock:
            if self._thread is not None:
                return
            opened: Future[None] = Future()
            thread = threading.Thread(
                target=self._serve, args=(opened,), name="labric-db", daemon=True
            )
            thread.start()
            try:
                opened.result()
            except BaseException:
                thread.join()
                raise
            self._thread = thread

    async def open(self) -> None:
        """Like :meth:`open_sync`, without blocking the event loop."""
        await asyncio.to_thread(self.open_sync)

    def close_sync(self) -> None:
        """Let the operations already queued finish, close the connection and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
        thread.join()

    async def close(self) -> None:
        """Like :meth:`close_sync`, without blocking the event loop."""
        await asyncio.to_thread(self.close_sync)

    # -- operations ---------------------------------------------------------------------------

    def _submit(self, work: _Work) -> None:
        with self._lock:
            if self._thread is None:
                raise DatabaseError("The database is not open")
            self._queue.put(work)

    async def _await(self, fn: Callable[..., T], args: tuple[Any, ...], durable: bool) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._submit(_Work(fn, args, durable, loop, future, None))
        return await future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` atomically on the database thread and await its outcome, which
        arrives once its transaction has committed (see the module docstring)."""
        return await self._await(fn, args, False)

    async def run_durable(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, but the commit is on disk once this returns: a power cut cannot undo
        it (for steps that destroy or publish bytes on the strength of the row). Concurrent
        durable operations share one commit and one WAL sync."""
        return await self._await(fn, args, True)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(conn, *args)`` without waiting for it (its failure is logged): for
        bookkeeping that nothing is answered on, such as marking parts synced. Once the
        database is closed, it is dropped."""
        with contextlib.suppress(DatabaseError):
            self._submit(_Work(fn, args, False, None, None, None))

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` atomically and block until its transaction has committed.

        For synchronous callers on other threads (helpers, the CLI). Never call it from the
        database thread itself.
        """
        future: Future[T] = Future()
        self._submit(_Work(fn, args, False, None, None, future))
        return future.result()

"""Resume journals: what an interrupted transfer had already done.

One SQLite database per state directory (``TransferConfig.state_dir``, default
``~/.cache/labric/transfers``) holds a row per transfer, keyed by a digest of what identifies it
(API origin, key prefix, source path, size, mtime and attribution for uploads; origin, file id and
destination path for downloads). Values are small JSON documents: the file id, the parts or ranges
already stored and their CRC32Cs, the ETag a download is pinned to, whether an upload was confirmed.

Write-behind: :meth:`Journal.put` and :meth:`Journal.delete` record the change in memory and return;
one background flush commits everything pending in a single transaction in the worker thread, so a
bulk upload of thousands of files costs a handful of commits, not thousands. :meth:`Journal.get`
sees pending changes. A caller that must know an entry is on disk before it goes on (the transfer
engine, before confirming an upload) awaits :meth:`Journal.flush`.

Threading: the connection lives in one worker thread; every database call hops there, so the event
loop never blocks on disk. Durability: WAL with ``synchronous=NORMAL`` (a crash may lose the last
commits, never corrupt the file); losing an entry only means re-sending that file or part, because
the server is always asked what it already holds before anything is skipped.

Many processes: every process of a machine (Dask workers, say) may share one state directory.
SQLite's file locks order their writers: each commit takes the write lock up front
(``BEGIN IMMEDIATE``) and waits up to :data:`BUSY_TIMEOUT` seconds for it, so a commit never
fails halfway because another process wrote first, and a process killed mid-commit leaves the
database as it was before that commit. A journal used in a process other than the one that
opened it (after ``fork``) leaves the parent's connection and thread alone and opens its own.
Over a network filesystem SQLite's locks are unreliable: give each machine a local
``state_dir``.

Entries of confirmed uploads are kept (so rerunning a bulk upload after a crash skips what was
already confirmed) and pruned after :data:`KEEP_CONFIRMED_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["BUSY_TIMEOUT", "KEEP_CONFIRMED_SECONDS", "Journal", "default_state_dir", "journal_key"]

T = TypeVar("T")

#: How long entries of finished transfers are kept.
KEEP_CONFIRMED_SECONDS = 7 * 24 * 3600
#: Seconds a commit waits for another process's write to finish before it fails.
BUSY_TIMEOUT = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
)
"""

_Change = tuple[str, str, str | None, float]  # kind, key, JSON value (None: delete), time

#: What forked children inherited and must never close (see :meth:`Journal._adopt`).
_FORGOTTEN: list[object] = []


def default_state_dir() -> Path:
    """``$XDG_CACHE_HOME/labric/transfers``, else ``~/.cache/labric/transfers``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "labric" / "transfers"


def journal_key(*parts: object) -> str:
    """A stable digest of the values that identify a transfer."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


class Journal:
    """An async key/value store of transfer state, backed by SQLite in one worker thread.

    Args:
        state_dir: Directory holding ``journal.sqlite3``; created on first use.
    """

    def __init__(self, state_dir: str | os.PathLike[str] | None) -> None:
        self._dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending: dict[tuple[str, str], _Change] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._pid = os.getpid()

    @property
    def path(self) -> Path:
        return self._dir / "journal.sqlite3"

    # -- worker thread ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            conn.execute(
                "DELETE FROM entries WHERE updated_at < ?", (time.time() - KEEP_CONFIRMED_SECONDS,)
            )
            self._conn = conn
        return self._conn

    def _adopt(self) -> None:
        """In a forked child, forget the parent's connection, thread and flush (never closing
        them: they are the parent's); what it had pending is the parent's to write."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            # Kept referenced: closing the parent's SQLite handle here could checkpoint or
            # unlock the database under the parent.
            _FORGOTTEN.append((self._executor, self._conn))
            self._executor = None
            self._conn = None
            self._flusher = None
            self._pending.clear()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._adopt()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="labric-journal")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connect()))

    @staticmethod
    def _commit(conn: sqlite3.Connection, changes: list[_Change]) -> None:
        # The write lock up front: waiting for another process happens here, not midway.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, key, value, when in changes:
                if value is None:
                    conn.execute("DELETE FROM entries WHERE kind = ? AND key = ?", (kind, key))
                else:
                    conn.execute(
                        "INSERT INTO entries (kind, key, value, updated_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, "
                        "updated_at = excluded.updated_at",
                        (kind, key, value, when),
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- public API ---------------------------------------------------------------------------

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The entry's value (pending changes included), or ``None``."""
        self._adopt()
        pending = self._pending.get((kind, key))
        if pending is not None:
            return json.loads(pending[2]) if pending[2] is not None else None

        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM entries WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            return str(row[0]) if row else None

        text = await self._run(op)
        return json.loads(text) if text is not None else None

    async def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace an entry (written behind; see :meth:`flush`)."""
        text = json.dumps(value, separators=(",", ":"))
        self._adopt()
        self._pending[(kind, key)] = (kind, key, text, time.time())
        self._schedule()

    async def delete(self, kind: str, key: str) -> None:
        """Remove an entry, if any (written behind; see :meth:`flush`)."""
        self._adopt()
        self._pending[(kind, key)] = (kind, key, None, time.time())
        self._schedule()

    async def flush(self) -> None:
        """Wait until every change made so far is committed."""
        self._adopt()
        while self._pending or self._flusher is not None:
            if self._flusher is None:
                self._schedule()
            flusher = self._flusher
            assert flusher is not None
            await asyncio.shield(flusher)

    def _schedule(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch = list(self._pending.values())
                await self._run(functools.partial(self._commit, changes=batch))
                for kind, key, value, when in batch:
                    # Keep a newer change made while this batch was being written.
                    if self._pending.get((kind, key)) == (kind, key, value, when):
                        del self._pending[(kind, key)]
        finally:
            self._flusher = None

    def close(self) -> None:
        """Close the database and stop the worker thread; idempotent.

        Changes still pending are committed first (synchronously), so nothing recorded is lost.
        """
        self._adopt()
        executor, self._executor = self._executor, None
        flusher, self._flusher = self._flusher, None
        if flusher is not None and not flusher.done():
            flusher.cancel()
        pending = list(self._pending.values())
        self._pending.clear()
        if executor is not None:
            conn = self._conn

            def shut() -> None:
                if pending:
                    self._commit(self._connect(), pending)
                if conn is not None:
                    conn.close()

            with contextlib.suppress(sqlite3.Error):
                executor.submit(shut).result()
            executor.shutdown(wait=True)
        elif pending:
            with contextlib.suppress(sqlite3.Error):
                self._commit(self._connect(), pending)
                if self._conn is not None:
                    self._conn.close()
        self._conn = None

"""Resume journals: what an interrupted transfer had already done.

One SQLite database per state directory (``TransferConfig.state_dir``, default
``~/.cache/labric/transfers``) holds a row per transfer, keyed by a digest of what identifies it
(API origin, key prefix, source path, size, mtime and attribution for uploads; origin, file id and
destination path for downloads). Values are small JSON documents: the file id, the parts or ranges
already stored and their CRC32Cs, the ETag a download is pinned to, whether an upload was confirmed.

Write-behind: :meth:`Journal.put` and :meth:`Journal.delete` record the change in memory and return;
the value is turned into JSON only when it is written, so an entry updated many times (the parts
of a long upload) is encoded once per commit, not once per update. Pending changes are committed
together, in one transaction in the worker thread, when a caller awaits :meth:`Journal.flush`
(the transfer engine does before confirming an upload, so concurrent confirms share a commit),
else :data:`WRITE_BEHIND_SECONDS` after the first of them or once :data:`WRITE_BEHIND_MAX` are
pending: a bulk upload of thousands of files costs a commit per batch of files, not several per
file. :meth:`Journal.get` sees pending changes; concurrent lookups share one query (one trip to the
worker thread for a batch of files).

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

__all__ = [
    "BUSY_TIMEOUT",
    "KEEP_CONFIRMED_SECONDS",
    "WRITE_BEHIND_MAX",
    "WRITE_BEHIND_SECONDS",
    "Journal",
    "default_state_dir",
    "journal_key",
]

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

#: How long a change may wait in memory before it is committed, unless flushed sooner.
WRITE_BEHIND_SECONDS = 0.5
#: How many pending changes start a commit at once.
WRITE_BEHIND_MAX = 1024

_Change = tuple[str, str, dict[str, Any] | None, float]  # kind, key, value (None: delete), time
_Row = tuple[str, str, str | None, float]  # the same, its value as JSON
#: Keys looked up per query (under SQLite's limit on bound parameters).
_LOOKUP_BATCH = 400

#: What forked children inherited and must never close (see :meth:`Journal._adopt`).
_FORGOTTEN: list[object] = []


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the journal in WAL mode, waiting for other processes as a commit does.

    Setting the mode needs a lock that SQLite may refuse at once, without calling its busy
    handler, while another process opens the same new file or checkpoints it; so the refusal
    is retried (on the journal's own thread, with a growing pause) until :data:`BUSY_TIMEOUT`.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if ("locked" not in message and "busy" not in message) or (
                time.monotonic() >= deadline
            ):
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


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
        self._timer: asyncio.TimerHandle | None = None
        self._lookups: dict[tuple[str, str], asyncio.Future[str | None]] = {}
        self._reader: asyncio.Task[None] | None = None
        #: Work done so far, for tests of its shape: commits, rows written, lookup queries.
        self.commits = 0
        self.rows_written = 0
        self.queries = 0

    @property
    def path(self) -> Path:
        return self._dir / "journal.sqlite3"

    # -- worker thread ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                _use_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                conn.execute(
                    "DELETE FROM entries WHERE updated_at < ?",
                    (time.time() - KEEP_CONFIRMED_SECONDS,),
                )
            except BaseException:
                conn.close()
                raise
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
            self._timer = None
            self._reader = None
            self._lookups = {}
            self._pending.clear()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._adopt()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="labric-journal")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connect()))

    @staticmethod
    def _encode(changes: list[_Change]) -> list[_Row]:
        return [
            (kind, key, None if value is None else json.dumps(value, separators=(",", ":")), when)
            for kind, key, value, when in changes
        ]

    @staticmethod
    def _lookup(
        conn: sqlite3.Connection, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for kind in {k for k, _ in keys}:
            wanted = [key for k, key in keys if k == kind]
            for start in range(0, len(wanted), _LOOKUP_BATCH):
                batch = wanted[start : start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = conn.execute(
                    f"SELECT key, value FROM entries WHERE kind = ? AND key IN ({marks})",
                    (kind, *batch),
                )
                for key, value in rows:
                    found[(kind, str(key))] = str(value)
        return found

    @staticmethod
    def _commit(conn: sqlite3.Connection, changes: list[_Row]) -> None:
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
            value = pending[2]
            # A copy: the caller may change it, the pending value may still change.
            return json.loads(json.dumps(value)) if value is not None else None
        lookup = self._lookups.get((kind, key))
        if lookup is None:
            lookup = asyncio.get_running_loop().create_future()
            self._lookups[(kind, key)] = lookup
            if self._reader is None:
                self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        text = await asyncio.shield(lookup)
        return json.loads(text) if text is not None else None

    async def _read_loop(self) -> None:
        """Answer every lookup asked so far with one query; repeat while more arrive."""
        try:
            while self._lookups:
                lookups, self._lookups = self._lookups, {}
                keys = list(lookups)
                self.queries += 1
                try:
                    found = await self._run(functools.partial(self._lookup, keys=keys))
                except BaseException as exc:
                    for future in lookups.values():
                        if not future.done():
                            if isinstance(exc, Exception):
                                future.set_exception(exc)
                            else:
                                future.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for wanted, future in lookups.items():
                    if not future.done():
                        future.set_result(found.get(wanted))
        finally:
            self._reader = None
            for future in self._lookups.values():
                future.cancel()
            self._lookups.clear()

    async def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace an entry (written behind; see :meth:`flush`).

        The value is encoded when it is written: later changes to it until then are written too.
        """
        self._adopt()
        self._pending[(kind, key)] = (kind, key, value, time.time())
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
                self._start_flusher()
            flusher = self._flusher
            assert flusher is not None
            await asyncio.shield(flusher)

    def _schedule(self) -> None:
        if self._flusher is not None:
            return  # the running flush goes on while changes are pending
        if len(self._pending) >= WRITE_BEHIND_MAX:
            self._start_flusher()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                WRITE_BEHIND_SECONDS, self._start_flusher
            )

    def _start_flusher(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flusher is None and self._pending:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch = list(self._pending.values())
                rows = self._encode(batch)
                self.commits += 1
                self.rows_written += len(rows)
                await self._run(functools.partial(self._commit, changes=rows))
                for change in batch:
                    # Keep a newer change made while this batch was being written.
                    if self._pending.get(change[:2]) is change:
                        del self._pending[change[:2]]
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
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        pending = self._encode(list(self._pending.values()))
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

"""Resume journals: what an interrupted transfer had already done.

One SQLite database per state directory (``TransferConfig.state_dir``, default
``~/.cache/labric/transfers``) holds a row per unfinished upload or download, keyed by a digest of
what identifies it (API origin, source path, size and mtime for uploads; origin, file id and
destination path for downloads). Values are small JSON documents: the file id, the part size, the
parts or ranges already stored and their CRC32Cs, the ETag a download is pinned to.

Threading: the connection lives in one worker thread; every call hops there, so the event loop
never blocks on disk. Durability: WAL with ``synchronous=NORMAL`` (a crash may lose the last few
entries, never corrupt the file); losing an entry only means re-sending that part, because the
server is always asked what it already holds before anything is skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Journal", "default_state_dir", "journal_key"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
)
"""


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

    @property
    def path(self) -> Path:
        return self._dir / "journal.sqlite3"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="labric-journal")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connect()))

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The entry's value, or ``None``."""

        def op(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT value FROM entries WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            return json.loads(row[0]) if row else None

        return await self._run(op)

    async def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Create or replace an entry."""
        text = json.dumps(value, separators=(",", ":"))

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO entries (kind, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (kind, key, text, time.time()),
            )

        await self._run(op)

    async def delete(self, kind: str, key: str) -> None:
        """Remove an entry (no error when absent)."""
        await self._run(
            lambda conn: conn.execute("DELETE FROM entries WHERE kind = ? AND key = ?", (kind, key))
        )

    def close(self) -> None:
        """Close the database and stop the worker thread; idempotent."""
        executor, self._executor = self._executor, None
        if executor is not None:
            conn = self._conn

            def shut() -> None:
                if conn is not None:
                    conn.close()

            executor.submit(shut).result()
            executor.shutdown(wait=True)
        self._conn = None

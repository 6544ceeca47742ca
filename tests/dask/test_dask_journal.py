"""The resume journal shared by many processes at once (as by the workers of a Dask machine)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path

from labric._transfer.journal import Journal

WRITERS = 6
ENTRIES = 60


def _write(state_dir: str, writer: int, start: object, kill_after: int | None) -> None:
    """Write ENTRIES entries, flushing each; SIGKILL itself after ``kill_after`` of them."""

    async def main() -> None:
        journal = Journal(state_dir)
        start.wait()  # type: ignore[attr-defined]  # every writer starts together
        for i in range(ENTRIES):
            await journal.put("upload", f"{writer}-{i}", {"file_id": f"f{writer}-{i}", "n": i})
            await journal.flush()
            if kill_after is not None and i + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            assert await journal.get("upload", f"{writer}-{i}") == {
                "file_id": f"f{writer}-{i}",
                "n": i,
            }
        journal.close()

    asyncio.run(main())


def test_many_processes_share_one_journal_and_a_killed_one_corrupts_nothing(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    killed = WRITERS - 1
    procs = [
        context.Process(
            target=_write,
            args=(str(tmp_path), w, start, 25 if w == killed else None),
        )
        for w in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0] * killed + [-signal.SIGKILL]

    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        keys = {row[0] for row in db.execute("SELECT key FROM entries WHERE kind = 'upload'")}
    # Every survivor's entries, and every entry the killed writer flushed before it died.
    assert keys == {f"{w}-{i}" for w in range(killed) for i in range(ENTRIES)} | {
        f"{killed}-{i}" for i in range(25)
    }


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents(tmp_path: Path) -> None:
    async def parent_writes(journal: Journal, key: str) -> None:
        await journal.put("upload", key, {"by": key})
        await journal.flush()

    journal = Journal(tmp_path)
    asyncio.run(parent_writes(journal, "before"))  # the parent's connection and thread exist
    context = multiprocessing.get_context("fork")
    child = context.Process(target=lambda: asyncio.run(parent_writes(journal, "child")))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    asyncio.run(parent_writes(journal, "after"))  # the parent's connection still works
    journal.close()

    reopened = Journal(tmp_path)

    async def read() -> list[object]:
        return [await reopened.get("upload", k) for k in ("before", "child", "after")]

    assert asyncio.run(read()) == [{"by": "before"}, {"by": "child"}, {"by": "after"}]
    reopened.close()

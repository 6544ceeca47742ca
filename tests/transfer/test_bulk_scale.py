"""Bulk calls cost the same per file at any count: no bookkeeping grows with the files done.

Counted, not timed: the journal's rows written, commits and lookup queries, and the progress
events, against the number of files (each bounded by a constant per file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from labric._transfer.journal import Journal
from labric.models.transfers import TransferProgress
from labric.server import LocalServer

from .conftest import make_client


async def test_pending_journal_changes_are_encoded_and_written_once_per_commit(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "state")
    try:
        for i in range(500):
            await journal.put("upload", f"file-{i}", {"file_id": f"f{i}", "parts": None})
        parts: dict[str, str] = {}
        for number in range(1, 1001):
            # A many-part upload records its growing part map after every part.
            parts[str(number)] = "AAAAAA=="
            await journal.put("upload", "big", {"file_id": "big", "parts": parts})
        await journal.flush()
        assert journal.commits == 1
        assert journal.rows_written == 501
        assert (await journal.get("upload", "big")) == {"file_id": "big", "parts": parts}
    finally:
        journal.close()


async def test_concurrent_journal_lookups_share_one_query(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state")
    try:
        for i in range(0, 300, 2):
            await journal.put("upload", f"k{i}", {"n": i})
        await journal.flush()
        found = await asyncio.gather(*(journal.get("upload", f"k{i}") for i in range(300)))
        assert journal.queries == 1
        assert found == [{"n": i} if i % 2 == 0 else None for i in range(300)]
    finally:
        journal.close()


async def _bulk_counts(
    server: LocalServer, make_file: Callable[..., Path], root: Path, count: int
) -> dict[str, int]:
    folder = root / f"files-{count}"
    for i in range(count):
        make_file(f"w{i:05d}.csv", 100 + i % 7, folder=folder)
    events: list[TransferProgress] = []
    async with make_client(server, root / f"state-{count}") as client:
        outcomes = await client.files.upload_many([folder], on_progress=events.append)
        assert all(o.ok for o in outcomes)
        assert len(outcomes) == count
        context = client.files._engine._context
        journal = context.journal
        assert context.limiter.in_flight == 0
        assert not context.limiter._waiters
        assert context.memory.used == 0
        assert not context.memory._waiters
        return {
            "rows": journal.rows_written,
            "commits": journal.commits,
            "queries": journal.queries,
            "events": len(events),
        }


async def test_upload_many_bookkeeping_is_linear_in_the_files(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    for count in (30, 120):
        counts = await _bulk_counts(parts_server, make_file, tmp_path, count)
        # Per file: at most three journal rows (ticket, sent, confirmed), one lookup and one
        # commit (the one before its confirm, often shared), and three progress events.
        assert counts["rows"] <= 3 * count
        assert counts["queries"] <= count
        assert counts["commits"] <= count + 1
        assert counts["events"] <= 3 * count

"""Group commit and background part syncs: batching never costs an answer, an error or a byte."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from labric.server import LocalServer
from labric.server.core import blobs, records
from labric.server.core.blobs import BlobStore
from labric.server.core.db import Database

from ._support import KiB, Wire, crc_b64


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "a.db")
    await database.open()
    try:
        yield database
    finally:
        await database.close()


class _Gate:
    """Holds the database thread in one operation until opened, so that what is submitted
    meanwhile is queued, and then runs as one batch."""

    def __init__(self, db: Database) -> None:
        self._entered = threading.Event()
        self._open = threading.Event()
        self.held = asyncio.ensure_future(db.run(self._hold))

    def _hold(self, conn: sqlite3.Connection) -> None:
        self._entered.set()
        self._open.wait()

    async def __aenter__(self) -> None:
        await asyncio.to_thread(self._entered.wait)

    async def __aexit__(self, *exc: object) -> None:
        self._open.set()
        await self.held


def _meta(key: str, value: str = "v", *, fail: bool = False) -> object:
    def write(conn: sqlite3.Connection) -> str:
        records.meta_set(conn, key, value)
        if fail:
            raise RuntimeError(f"{key} failed")
        return key

    return write


async def test_concurrent_durable_operations_share_one_commit_and_all_answer(
    db: Database,
) -> None:
    gate = _Gate(db)
    async with gate:
        commits, syncs = db.commits, db.syncs
        answers = [asyncio.ensure_future(db.run_durable(_meta(f"k{i}"))) for i in range(40)]
        await asyncio.sleep(0)  # every operation is queued behind the gate
    assert await asyncio.gather(*answers) == [f"k{i}" for i in range(40)]
    # The gate's own commit, then one for the forty, made durable by a single WAL sync.
    assert db.commits - commits == 2
    assert db.syncs - syncs == 1
    stored = await db.run(
        lambda conn: [r[0] for r in conn.execute("SELECT key FROM server_meta ORDER BY key")]
    )
    assert stored == sorted(f"k{i}" for i in range(40))


async def test_a_durable_answer_comes_after_a_wal_sync(db: Database) -> None:
    syncs = db.syncs
    await db.run_durable(_meta("a"))
    assert db.syncs == syncs + 1
    await db.run(_meta("b"))  # not durable: no sync of its own
    assert db.syncs == syncs + 1


async def test_a_failure_in_a_batch_fails_only_its_own_operation(db: Database) -> None:
    gate = _Gate(db)
    async with gate:
        first = asyncio.ensure_future(db.run_durable(_meta("first")))
        bad = asyncio.ensure_future(db.run(_meta("bad", fail=True)))
        last = asyncio.ensure_future(db.run(_meta("last")))
        await asyncio.sleep(0)
    assert await first == "first"
    assert await last == "last"
    with pytest.raises(RuntimeError, match="bad failed"):
        await bad
    assert await db.run(records.meta_get, "first") == "v"
    assert await db.run(records.meta_get, "bad") is None  # its savepoint was rolled back
    assert await db.run(records.meta_get, "last") == "v"


async def test_a_failure_that_wrote_nothing_needs_no_second_run(db: Database) -> None:
    runs: list[str] = []

    def refuse(conn: sqlite3.Connection) -> None:
        runs.append("refuse")
        raise LookupError("nothing to do")

    def write(conn: sqlite3.Connection) -> str:
        runs.append("write")
        records.meta_set(conn, "written", "v")
        return "written"

    gate = _Gate(db)
    async with gate:
        refused = asyncio.ensure_future(db.run(refuse))
        written = asyncio.ensure_future(db.run_durable(write))
        await asyncio.sleep(0)
    with pytest.raises(LookupError):
        await refused
    assert await written == "written"
    assert runs == ["refuse", "write"]  # each ran once: nothing had to be undone


async def test_a_batch_whose_transaction_is_lost_fails_every_operation(db: Database) -> None:
    def lose_everything(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # as SQLite itself does on some errors (a full disk)
        raise OSError("the transaction was rolled back")

    gate = _Gate(db)
    async with gate:
        before = asyncio.ensure_future(db.run(_meta("before")))
        lost = asyncio.ensure_future(db.run(lose_everything))
        after = asyncio.ensure_future(db.run(_meta("after")))
        await asyncio.sleep(0)
    for answer in (before, lost, after):
        with pytest.raises(OSError, match="rolled back"):
            await answer
    # Nothing of the batch is stored, so nothing was answered as stored.
    assert await db.run(records.meta_get, "before") is None
    assert await db.run(records.meta_get, "after") is None


async def test_posted_operations_run_in_order(db: Database) -> None:
    db.post(_meta("posted", "1"))
    db.post(_meta("posted", "2"))
    assert await db.run(records.meta_get, "posted") == "2"


async def test_concurrent_confirms_are_all_answered_and_confirmed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with LocalServer(tmp_path / "data") as server:
        wire = Wire(session, server)
        instrument = server.create_instrument("reader")
        tickets = []
        for i in range(24):
            ticket = await wire.ticket(f"f{i}.csv", instrument_id=instrument)
            body = f"row,{i}\n".encode()
            put = await wire.put(ticket["upload_url"], data=body, headers=ticket["headers"])
            assert put.status == 200, put.body
            tickets.append((ticket["file_id"], crc_b64(body)))
        replies = await asyncio.gather(
            *(wire.post(f"/v1/files/{file_id}/confirm-upload") for file_id, _ in tickets)
        )
        assert [r.status for r in replies] == [200] * len(tickets)
        assert [r.json()["crc32c_hash"] for r in replies] == [crc for _, crc in tickets]
        listed = (await wire.get("/v1/files", params={"page_size": "100"})).json()
        assert {f["file_id"] for f in listed} == {file_id for file_id, _ in tickets}


# -- parts: recorded once written, synced in the background ----------------------------------


async def test_a_written_part_is_reported_once_a_sync_covers_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.prepare_sync()
    try:
        generation = await store.create_upload("f", 2 * KiB)
        synced: asyncio.Queue[list[tuple[int, str]]] = asyncio.Queue()
        async with store.open_upload("f", generation) as upload:
            for number in (1, 2):
                claim = await upload.claim(number)
                writer = upload.writer(claim, (number - 1) * KiB)
                await writer.write([bytes([number]) * KiB])
                await writer.finish()
                claim.release()
                upload.part_written(number, f"crc{number}", synced.put_nowait)
            covered = []
            while len(covered) < 2:
                covered += await synced.get()
            assert sorted(covered) == [(1, "crc1"), (2, "crc2")]
            assert 1 <= upload.syncs <= 2
    finally:
        store.close()


async def _part_upload(
    data_dir: Path, session: aiohttp.ClientSession, data: bytes
) -> tuple[str, list[dict[str, object]]]:
    async with LocalServer(data_dir, part_size=KiB) as server:
        wire = Wire(session, server)
        instrument = server.create_instrument("reader")
        ticket = await wire.ticket("big.bin", instrument_id=instrument, size_bytes=len(data))
        for part in ticket["parts"][:3]:
            piece = data[part["offset"] : part["offset"] + part["size"]]
            reply = await wire.put(part["url"], data=piece)
            assert reply.status == 200, reply.body
        return ticket["file_id"], ticket["parts"]


def _forget_syncs(data_dir: Path) -> None:
    """Mark every recorded part unsynced, as if the server had died before any sync ended."""
    conn = sqlite3.connect(data_dir / "labric.db")
    try:
        conn.execute("UPDATE upload_parts SET synced = 0")
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("same_boot", [True, False])
async def test_unsynced_parts_survive_a_restart_but_not_a_reboot(
    tmp_path: Path,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    same_boot: bool,
) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("first-boot\n")
    monkeypatch.setattr(blobs, "BOOT_ID_FILE", boot)
    data = bytes(range(256)) * 20
    data_dir = tmp_path / "data"
    file_id, parts = await _part_upload(data_dir, session, data)
    _forget_syncs(data_dir)
    if not same_boot:
        boot.write_text("second-boot\n")  # the machine restarted: unsynced bytes may be lost
    async with LocalServer(data_dir, part_size=KiB) as server:
        wire = Wire(session, server)
        status = (await wire.get(f"/v1/files/{file_id}/upload-status")).json()
        held = [p["number"] for p in status["parts"]]
        assert held == ([1, 2, 3] if same_boot else [])
        for part in status["missing_parts"]:
            piece = data[part["offset"] : part["offset"] + part["size"]]
            assert (await wire.put(part["url"], data=piece)).status == 200
        manifest = [
            {"number": p["number"], "crc32c": crc_b64(data[p["offset"] : p["offset"] + p["size"]])}
            for p in parts
        ]
        reply = await wire.post(f"/v1/files/{file_id}/confirm-upload", json={"parts": manifest})
        assert reply.status == 200, reply.body
        assert reply.json()["crc32c_hash"] == crc_b64(data)

"""Crash and cancel: SIGKILLed clients and servers, and sync bulk calls closed from another thread.

Each interrupted run is followed by a rerun that must finish the job while sending only what was
missing, as the server's byte counters show. ``tests/transfer/test_resilience.py`` covers a
SIGKILLed single multi-part upload; these extend it to bulk uploads (many files plus a multi-part
one), ranged and bulk downloads, the server's own death, and the sync client.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from server.test_cli import Served, _serve
from transfer.conftest import PART, make_client
from transfer.test_resilience import _wait_for

from benchmarks.soak import count_records
from labric import AsyncLabric, Labric, RetryPolicy, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.errors import APIConnectionError, ClientClosedError
from labric.server import FaultConfig, LocalServer

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from labric import AsyncLabric, TransferConfig

    async def main():
        part = int(os.environ["PART"])
        transfer = TransferConfig(
            part_size=part, multipart_threshold=2 * part, chunk_size=64 * 1024,
            concurrency=int(os.environ["CONCURRENCY"]), state_dir=os.environ["STATE"],
        )
        async with AsyncLabric(
            os.environ["KEY"], base_url=os.environ["URL"], transfer=transfer
        ) as client:
            mode, *args = sys.argv[1:]
            if mode == "upload_many":
                await client.files.upload_many(args)
            elif mode == "download":
                await client.files.download(args[0], args[1])
            else:
                await client.files.download_many(args[1:], args[0])

    asyncio.run(main())
    """
)

#: Storage slowed so that a kill lands mid-transfer: each body moves at this many bytes a second.
SLOW_STORAGE = FaultConfig(bandwidth=1_000_000, scope="storage")
BIG = "run/m/big.raw"


async def _run_and_kill(
    server: LocalServer,
    state: Path,
    args: list[str],
    until: Callable[[], bool],
    *,
    concurrency: int = 4,
) -> None:
    """Run the child with ``args`` against ``server``; SIGKILL it once ``until()`` holds."""
    env = {
        **os.environ,
        "PART": str(PART),
        "STATE": str(state),
        "KEY": server.admin_key,
        "URL": server.base_url,
        "CONCURRENCY": str(concurrency),
    }
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, *args, env=env)
    try:
        await _wait_for(until, timeout=60)
        child.send_signal(signal.SIGKILL)
    finally:
        await child.wait()
    # Killed, not finished: otherwise the rerun below would prove nothing.
    assert child.returncode == -signal.SIGKILL
    # The server notices the dead connections at its next read or write; wait for that, so the
    # rerun's byte counts are its own.
    await _wait_for(lambda: _settled(server))


def _settled(server: Any) -> bool:
    """Whether every request the server has seen has been answered (or found dropped)."""
    requests = server.stats["requests"]
    return bool(requests["total"] == sum(requests["by_status"].values()))


def _tree(root: Path, small: int, big_parts: int) -> dict[str, bytes]:
    """``run/a/``: half the ``small`` files (8-9 KiB), ``run/m/big.raw``: a multi-part file,
    ``run/z/``: the other half; a bulk upload takes them in that order. Returns name -> bytes."""
    made: dict[str, bytes] = {}
    for i in range(small):
        folder = "a" if i < small // 2 else "z"
        made[f"run/{folder}/w{i:04d}.csv"] = os.urandom(8192 + i)
    made[BIG] = os.urandom(big_parts * PART + 11)
    for name, data in made.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return made


def _crc(data: bytes) -> str:
    return crc32c_to_b64(crc32c(data))


def _confirmed_by_name(db_path: Path) -> dict[str, str]:
    """original path -> file id of every confirmed file, from a server's database."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT original_path, id FROM files WHERE status = 'confirmed'")
        confirmed: dict[str, str] = {}
        for path, file_id in rows:
            assert path not in confirmed, f"{path} was confirmed twice"
            confirmed[path] = file_id
        return confirmed
    finally:
        conn.close()


def _parts_stored(db_path: Path) -> int:
    """Parts a server has stored (not merely begun), from its database."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM upload_parts").fetchone()
        return int(count)
    finally:
        conn.close()


def _journal(state: Path, kind: str) -> list[dict[str, Any]]:
    """The journal's entries of one kind as they are on disk (``[]`` before it exists)."""
    path = state / "journal.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=10)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'entries'").fetchall()
        if not tables:
            return []  # created, its schema not yet written
        rows = conn.execute("SELECT value FROM entries WHERE kind = ?", (kind,)).fetchall()
        return [json.loads(value) for (value,) in rows]
    finally:
        conn.close()


# -- SIGKILL of a client ----------------------------------------------------------------------


async def test_killed_bulk_upload_reruns_sending_only_what_was_missing(
    parts_server: LocalServer, tmp_path: Path
) -> None:
    sources = _tree(tmp_path / "src", small=200, big_parts=24)
    state = tmp_path / "state"
    parts_server.faults.update(SLOW_STORAGE)
    # The kill lands while the multi-part file is going up: the files before it are confirmed,
    # the ones after it not started.
    await _run_and_kill(
        parts_server,
        state,
        ["upload_many", str(tmp_path / "src" / "run")],
        lambda: _parts_stored(parts_server.data_dir.db_path) >= 3,
    )
    parts_server.faults.update(FaultConfig())
    before = _confirmed_by_name(parts_server.data_dir.db_path)
    assert 0 < len(before) < len(sources) - 1
    assert BIG not in before
    (big_id,) = parts_server.stats["storage"]["part_puts_by_file"]

    async with make_client(parts_server, state) as client:
        status = await client.files.upload_status(big_id)
        big_stored = sum(p.size for p in status.parts)
        assert 0 < big_stored < len(sources[BIG])
        parts_server.reset_stats()
        outcomes = await client.files.upload_many([tmp_path / "src" / "run"])
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    by_name = {Path(str(o.source)).relative_to(tmp_path / "src").as_posix(): o for o in outcomes}
    # What the killed run had confirmed was skipped, not sent again.
    for name, file_id in before.items():
        assert by_name[name].skipped, name
        assert by_name[name].file is not None
        assert by_name[name].file.file_id == file_id
    received = parts_server.stats["storage"]["bytes_received_by_file"]
    assert not set(received) & set(before.values())
    # The multi-part file resumed its own record and sent only its missing parts.
    big = by_name[BIG].file
    assert big is not None
    assert big.file_id == big_id
    assert received[big_id] == len(sources[BIG]) - big_stored
    # Every other file still missing went up exactly once (or, had its bytes landed before the
    # kill, was only confirmed).
    after = _confirmed_by_name(parts_server.data_dir.db_path)
    assert set(after) == set(sources)
    for name, file_id in after.items():
        if name not in before and name != BIG:
            assert received.get(file_id, 0) in (0, len(sources[name])), name
    total = sum(len(d) for d in sources.values())
    assert sum(received.values()) < total - sum(len(sources[n]) for n in before)
    for outcome in outcomes:
        assert outcome.file is not None
        name = Path(str(outcome.source)).relative_to(tmp_path / "src").as_posix()
        assert outcome.file.crc32c_hash == _crc(sources[name])
    # Records left pending by the kill are at most the files that were in flight.
    counts = count_records(parts_server.data_dir.db_path)
    assert sum(counts.values()) - len(sources) <= 4


def _range_bytes(size: int, indexes: list[str]) -> int:
    return sum(min(PART, size - int(i) * PART) for i in indexes)


async def test_killed_ranged_download_resumes_from_its_journal(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    source = make_file("big.raw", 16 * PART + 5)
    size = source.stat().st_size
    async with make_client(parts_server, tmp_path / "up") as client:
        up = await client.files.upload(source)
    state = tmp_path / "state"
    dest = tmp_path / "dl" / "big.raw"
    dest.parent.mkdir()
    parts_server.reset_stats()
    parts_server.faults.update(SLOW_STORAGE)
    await _run_and_kill(
        parts_server,
        state,
        ["download", up.file_id, str(dest)],
        lambda: any(e.get("ranges") for e in _journal(state, "download")),
        concurrency=2,
    )
    parts_server.faults.update(FaultConfig())
    # Nothing under the final name; the temporary file and the journal of its ranges remain.
    assert not dest.exists()
    (entry,) = _journal(state, "download")
    assert (dest.parent / entry["temp"]).stat().st_size == size
    kept = _range_bytes(size, list(entry["ranges"]))
    assert 0 < kept < size

    parts_server.reset_stats()
    async with make_client(parts_server, state) as client:
        await client.files.download(up.file_id, dest)
    assert parts_server.stats["storage"]["bytes_sent"] == size - kept
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big.raw"]
    assert _journal(state, "download") == []


async def test_killed_bulk_download_reruns_fetching_only_what_was_missing(
    parts_server: LocalServer, tmp_path: Path
) -> None:
    sources = {f"d/f{i:03d}.bin": os.urandom(20_000 + i) for i in range(150)}
    async with make_client(parts_server, tmp_path / "up") as client:
        uploads = await client.files.upload_many(list(sources.items()))
    ids = [o.file.file_id for o in uploads if o.file is not None]
    assert len(ids) == len(sources)
    dest = tmp_path / "dl"
    state = tmp_path / "state"
    parts_server.reset_stats()
    parts_server.faults.update(attrs.evolve(SLOW_STORAGE, latency_ms=10))
    await _run_and_kill(
        parts_server,
        state,
        ["download_many", str(dest), *ids],
        lambda: len(list(dest.rglob("*.bin"))) >= 10,
    )
    parts_server.faults.update(FaultConfig())
    files = [p for p in dest.rglob("*") if p.is_file()]
    finals = {p.relative_to(dest).as_posix(): p for p in files if p.suffix != ".labric-part"}
    # Whatever is under a final name is whole; the rest is missing or a temporary file.
    assert 0 < len(finals) < len(sources)
    for name, path in finals.items():
        assert path.read_bytes() == sources[name], name

    parts_server.reset_stats()
    async with make_client(parts_server, state) as client:
        outcomes = await client.files.download_many(ids, dest, skip_existing=True)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    skipped = {Path(o.path).relative_to(dest).as_posix() for o in outcomes if o.skipped and o.path}
    assert skipped == set(finals)
    missing = sum(len(data) for name, data in sources.items() if name not in finals)
    assert parts_server.stats["storage"]["bytes_sent"] == missing
    now = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert now == sources  # every file whole, no temporary file left


# -- SIGKILL of the server --------------------------------------------------------------------


async def _http_stats(served: Served) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {served.key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.base_url}/v1/admin/stats", headers=headers) as response,
    ):
        assert response.status == 200
        stats: dict[str, Any] = await response.json()
        return stats


def _client_of(served: Served, state: Path) -> AsyncLabric:
    # No transfer retry deadline: a killed server must fail the upload at once (after
    # max_retries), not after two minutes of connection-refused retries.
    transfer = TransferConfig(
        part_size=PART,
        multipart_threshold=2 * PART,
        concurrency=4,
        state_dir=str(state),
        retry_deadline=0,
    )
    retry = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
    return AsyncLabric(served.key, base_url=served.base_url, transfer=transfer, retry=retry)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.communicate()


async def test_server_killed_mid_upload_restarts_and_the_upload_resumes(
    make_file: Callable[..., Path], tmp_path: Path
) -> None:
    source = make_file("run.raw", 20 * PART + 3)
    data = source.read_bytes()
    size = len(data)
    data_dir = tmp_path / "data"
    db_path = data_dir / "labric.db"
    state = tmp_path / "state"
    served = await _serve(
        data_dir, "--part-size", str(PART), "--faults", "bandwidth=1000000,scope=storage"
    )
    restarted: Served | None = None
    try:
        async with _client_of(served, state) as client:
            upload = asyncio.create_task(client.files.upload(source))
            await _wait_for(lambda: _parts_stored(db_path) >= 3, timeout=60)
            await _kill(served.proc)
            assert served.proc.returncode == -signal.SIGKILL
            with pytest.raises(APIConnectionError):
                await upload

        port = served.base_url.rsplit(":", 1)[1].split("/", 1)[0]
        restarted = await _serve(data_dir, "--part-size", str(PART), "--port", port)
        assert (restarted.base_url, restarted.key) == (served.base_url, served.key)
        async with _client_of(restarted, state) as client:
            (entry,) = _journal(state, "upload")
            status = await client.files.upload_status(entry["file_id"])
            # The parts stored before the kill survived it whole: each matches the source.
            assert status.parts
            for part in status.parts:
                chunk = data[(part.number - 1) * PART : part.number * PART]
                assert (part.size, part.crc32c) == (len(chunk), _crc(chunk))
            stored = sum(p.size for p in status.parts)
            assert stored < size
            resumed = await client.files.upload(source)
            assert resumed.file_id == entry["file_id"]
            assert resumed.crc32c_hash == _crc(data)
            stats = await _http_stats(restarted)
            assert stats["storage"]["bytes_received"] == size - stored
            assert await client.files.read_bytes(resumed.file_id) == data
        assert list(_confirmed_by_name(db_path)) == ["run.raw"]
    finally:
        await _kill(served.proc)
        if restarted is not None:
            await _kill(restarted.proc)


# -- closing a sync client from another thread --------------------------------------------------


def _poll(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait in this thread for a condition the server's state will satisfy (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _sync_client(server: Any, state: Path) -> Labric:
    # No transfer retry deadline: a killed server must fail the upload at once (after
    # max_retries), not after two minutes of connection-refused retries.
    transfer = TransferConfig(
        part_size=PART,
        multipart_threshold=2 * PART,
        concurrency=4,
        state_dir=str(state),
        retry_deadline=0,
    )
    retry = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
    return Labric(server.admin_key, base_url=server.base_url, transfer=transfer, retry=retry)


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results, errors


def test_closing_the_sync_client_stops_a_bulk_upload_and_keeps_its_journal(
    tmp_path: Path,
) -> None:
    """``client.close()`` from another thread is how a sync bulk call is cancelled."""
    sources = _tree(tmp_path / "src", small=60, big_parts=24)
    state = tmp_path / "state"
    with LocalServer.run_in_thread(tmp_path / "server", part_size=PART) as srv:
        db_path = srv.data_dir.db_path
        srv.faults.update(SLOW_STORAGE)
        client = _sync_client(srv, state)
        thread, results, errors = _in_thread(
            lambda: client.files.upload_many([tmp_path / "src" / "run"])
        )
        # Once the client has recorded a part of the multi-part file, there is a journal to keep.
        _poll(lambda: any(e.get("parts") for e in _journal(state, "upload")))
        client.close()
        thread.join(10)
        assert not thread.is_alive()
        assert results == []
        assert [type(e) for e in errors] == [ClientClosedError]
        srv.faults.update(FaultConfig())
        _poll(lambda: _settled(srv))
        before = _confirmed_by_name(db_path)
        assert BIG not in before
        # The multi-part file's journal entry survived the close, with the parts it sent.
        (big_entry,) = [e for e in _journal(state, "upload") if e.get("parts")]
        big_id = big_entry["file_id"]

        srv.reset_stats()
        with _sync_client(srv, state) as again:
            stored = sum(p.size for p in again.files.upload_status(big_id).parts)
            assert stored > 0
            outcomes = again.files.upload_many([tmp_path / "src" / "run"])
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        received = srv.stats["storage"]["bytes_received_by_file"]
        assert received[big_id] == len(sources[BIG]) - stored
        assert not set(received) & set(before.values())
        assert set(_confirmed_by_name(db_path)) == set(sources)


def test_closing_the_sync_client_stops_a_bulk_download_without_partial_files(
    tmp_path: Path,
) -> None:
    sources = _tree(tmp_path / "src", small=60, big_parts=16)
    state = tmp_path / "state"
    dest = tmp_path / "dl"
    with LocalServer.run_in_thread(tmp_path / "server", part_size=PART) as srv:
        with _sync_client(srv, tmp_path / "up") as up:
            uploads = up.files.upload_many([tmp_path / "src" / "run"])
        ids = [o.file.file_id for o in uploads if o.file is not None]
        srv.faults.update(SLOW_STORAGE)
        srv.reset_stats()
        client = _sync_client(srv, state)
        thread, results, errors = _in_thread(lambda: client.files.download_many(ids, dest))
        _poll(lambda: any(e.get("ranges") for e in _journal(state, "download")))
        client.close()
        thread.join(10)
        assert not thread.is_alive()
        assert results == []
        assert [type(e) for e in errors] == [ClientClosedError]
        srv.faults.update(FaultConfig())
        _poll(lambda: _settled(srv))
        files = [p for p in dest.rglob("*") if p.is_file()]
        finals = {p.relative_to(dest).as_posix(): p for p in files if p.suffix != ".labric-part"}
        for name, path in finals.items():
            assert path.read_bytes() == sources[name], name
        assert BIG not in finals
        # The ranged download keeps its temporary file and journal, so it resumes.
        (entry,) = _journal(state, "download")
        size = len(sources[BIG])
        kept = _range_bytes(size, list(entry["ranges"]))
        assert kept > 0

        srv.reset_stats()
        with _sync_client(srv, state) as again:
            outcomes = again.files.download_many(ids, dest, skip_existing=True)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        fetched = sum(len(d) for n, d in sources.items() if n not in finals and n != BIG)
        assert srv.stats["storage"]["bytes_sent"] == fetched + size - kept
        now = {
            p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()
        }
        assert now == sources

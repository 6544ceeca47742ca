"""Resuming through the journal: the temporary file it names is reused or removed, never guessed."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from aiohttp import web

from labric import AsyncLabric, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.errors import APIStatusError

from ._server import HostileServer, StoredFile, serve_file

KiB = 1024
PART = 16 * KiB
RANGED = {"part_size": PART, "multipart_threshold": 2 * PART, "concurrency": 1}


def _client(hostile: HostileServer) -> AsyncLabric:
    config = TransferConfig(state_dir=str(hostile.state_dir / "state"), **RANGED)
    return hostile.client(transfer=config, max_retries=0)


def _entries(hostile: HostileServer) -> list[dict[str, Any]]:
    with sqlite3.connect(hostile.state_dir / "state" / "journal.sqlite3") as conn:
        rows = conn.execute("SELECT value FROM entries WHERE kind = 'download'").fetchall()
    return [json.loads(v) for (v,) in rows]


def _ranges(hostile: HostileServer) -> list[str | None]:
    return [r.headers.get("Range") for r in hostile.seen("GET", "/blob/")]


async def test_an_interrupted_ranged_download_resumes_its_journalled_file(
    hostile: HostileServer, tmp_path: Path
) -> None:
    body = os.urandom(6 * PART)
    failing = [True]

    def fourth_range_fails(request: web.Request) -> int | None:
        asked = request.headers.get("Range", "")
        return 500 if failing[0] and asked.startswith(f"bytes={3 * PART}-") else None

    f = serve_file(
        hostile,
        StoredFile(
            "f1",
            body,
            name="x.bin",
            content_crc=crc32c_to_b64(crc32c(body)),
            refuse=fourth_range_fails,
        ),
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    async with _client(hostile) as client:
        try:
            await client.files.download(f.file_id, dest / "x.bin")
        except APIStatusError:
            pass
        else:
            raise AssertionError("the download should have failed")
    (entry,) = _entries(hostile)
    assert sorted(p.name for p in dest.iterdir()) == [entry["temp"]]
    assert sorted(entry["ranges"]) == ["0", "1", "2"]

    failing[0] = False
    hostile.requests.clear()
    async with _client(hostile) as client:
        assert await client.files.download(f.file_id, dest / "x.bin") == dest / "x.bin"
    assert _ranges(hostile) == [f"bytes={i * PART}-{(i + 1) * PART - 1}" for i in (3, 4, 5)]
    assert sorted(p.name for p in dest.iterdir()) == ["x.bin"]
    assert (dest / "x.bin").read_bytes() == body
    assert _entries(hostile) == []


async def _fail_once_at_the_last_range(
    hostile: HostileServer, f: StoredFile, dest: Path, failing: list[bool]
) -> Path:
    """Run a download that fails at its last range; return the temporary file it kept."""
    async with _client(hostile) as client:
        with contextlib.suppress(APIStatusError):
            await client.files.download(f.file_id, dest / "x.bin")
    failing[0] = False
    (entry,) = _entries(hostile)
    kept = dest / entry["temp"]
    assert sorted(p.name for p in dest.iterdir()) == [kept.name]
    return kept


def _last_range_fails(failing: list[bool], last: int) -> Any:
    def refuse(request: web.Request) -> int | None:
        asked = request.headers.get("Range", "")
        return 500 if failing[0] and asked.startswith(f"bytes={last}-") else None

    return refuse


async def test_a_journalled_file_that_cannot_resume_is_removed(
    hostile: HostileServer, tmp_path: Path
) -> None:
    body = os.urandom(6 * PART)
    failing = [True]
    f = serve_file(
        hostile, StoredFile("f1", body, name="x.bin", refuse=_last_range_fails(failing, 5 * PART))
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    await _fail_once_at_the_last_range(hostile, f, dest, failing)
    # The object is replaced by a larger one: the kept ranges are worthless now.
    f.body = os.urandom(7 * PART)
    async with _client(hostile) as client:
        assert await client.files.download(f.file_id, dest / "x.bin") == dest / "x.bin"
    assert sorted(p.name for p in dest.iterdir()) == ["x.bin"]
    assert (dest / "x.bin").read_bytes() == f.body
    assert _entries(hostile) == []


async def test_a_journalled_name_replaced_by_a_symlink_is_neither_followed_nor_removed(
    hostile: HostileServer, tmp_path: Path
) -> None:
    body = os.urandom(6 * PART)
    failing = [True]
    f = serve_file(
        hostile, StoredFile("f1", body, name="x.bin", refuse=_last_range_fails(failing, 5 * PART))
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    kept = await _fail_once_at_the_last_range(hostile, f, dest, failing)
    precious = tmp_path / "precious"
    precious.write_bytes(b"precious")
    kept.unlink()
    kept.symlink_to(precious)
    async with _client(hostile) as client:
        assert await client.files.download(f.file_id, dest / "x.bin") == dest / "x.bin"
    assert precious.read_bytes() == b"precious"
    assert kept.is_symlink()
    assert sorted(p.name for p in dest.iterdir()) == sorted(["x.bin", kept.name])
    assert (dest / "x.bin").read_bytes() == body

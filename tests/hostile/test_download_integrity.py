"""Downloads never fill the disk on a lying size, and never claim a verification they did not do.

The hostile server states sizes, ranges, checksums and ETags that do not match the bytes it
sends; the client must fail the file (leaving nothing behind) or say plainly that it could only
check the size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric, TransferConfig
from labric._transfer.checksum import crc32c, crc32c_to_b64
from labric.errors import IntegrityError, TransferError

from ._server import HostileServer, StoredFile, serve_file

KiB = 1024
MiB = 1024 * KiB
PART = 16 * KiB
RANGED = {"part_size": PART, "multipart_threshold": 2 * PART, "chunk_size": 4 * KiB}


def _client(hostile: HostileServer, **transfer: Any) -> AsyncLabric:
    config = TransferConfig(state_dir=str(hostile.state_dir / "state"), **transfer)
    return hostile.client(transfer=config, max_retries=0)


def _crc(data: bytes) -> str:
    return crc32c_to_b64(crc32c(data))


def _left(root: Path) -> list[str]:
    """Files under ``root``, but the client's journal."""
    found = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(name for name in found if not name.startswith("state/"))


# -- lying sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [2**50, 10 * MiB, 3 * PART], ids=["petabyte", "10MiB", "small"])
async def test_a_ranged_download_of_a_lying_size_fails_at_the_first_range(
    hostile: HostileServer, tmp_path: Path, claimed: int
) -> None:
    body = os.urandom(5 * PART + 7)
    f = serve_file(hostile, StoredFile("f1", body, name="big.bin", size=claimed))
    dest = tmp_path / "dest"
    dest.mkdir()
    async with _client(hostile, **RANGED) as client:
        with pytest.raises(TransferError, match=f"is {len(body)} bytes, its stated size"):
            await client.files.download(f.file_id, dest / "big.bin")
        (outcome,) = await client.files.download_many([f.file_id], tmp_path / "many")
    assert isinstance(outcome.error, TransferError)
    assert len(hostile.seen("GET", "/blob/")) == 2  # one range each, nothing more asked
    assert _left(tmp_path) == []  # no temporary file, preallocated or not, stays behind


async def test_preallocation_waits_for_the_storage_confirmation(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """Until the first 206 confirmed the size, the temporary file holds no allocated space."""
    body = os.urandom(8 * PART)
    dest = tmp_path / "dest"
    sizes: list[int] = []

    async def look(request: web.Request) -> None:
        sizes.extend(p.stat().st_size for p in dest.iterdir())

    f = serve_file(hostile, StoredFile("f1", body, name="big.bin", before_body=look))
    dest.mkdir()
    async with _client(hostile, **RANGED, concurrency=1) as client:
        assert await client.files.download(f.file_id, dest / "big.bin") == dest / "big.bin"
    assert sizes[0] == 0  # before the first range: nothing allocated
    assert sizes[1] == len(body)  # after it: the confirmed size
    assert (dest / "big.bin").read_bytes() == body


@pytest.mark.parametrize("chunked", [True, False], ids=["no-length", "content-length"])
async def test_a_streamed_body_longer_than_stated_stops_at_the_stated_size(
    hostile: HostileServer, tmp_path: Path, chunked: bool
) -> None:
    stated = 100 * KiB
    dest = tmp_path / "dest"
    dest.mkdir()
    on_disk: list[int] = []

    def measure(sent: int) -> None:
        on_disk.extend(p.stat().st_size for p in dest.iterdir())

    body = os.urandom(4 * MiB)
    f = serve_file(
        hostile,
        StoredFile(
            "f1", body, name="x.bin", size=stated, chunked=chunked, chunk=16 * KiB, on_chunk=measure
        ),
    )
    async with _client(hostile) as client:
        with pytest.raises(TransferError, match=r"(more than the|longer than its stated)"):
            await client.files.download(f.file_id, dest / "x.bin")
    assert max(on_disk, default=0) <= stated  # nothing past the stated size was written
    assert _left(tmp_path) == []


@pytest.mark.parametrize("ranged", [False, True], ids=["stream", "ranges"])
async def test_a_body_shorter_than_stated_fails_and_leaves_nothing(
    hostile: HostileServer, tmp_path: Path, ranged: bool
) -> None:
    body = os.urandom(6 * PART)
    short = body[: 5 * PART]

    def honest_total(a: int, b: int, total: int) -> str:
        return f"bytes {a}-{b}/{len(body)}"  # the total agrees; a range just comes up short

    f = StoredFile("f1", body, name="x.bin", served=short, chunked=True)
    if ranged:
        f.content_range = honest_total
    serve_file(hostile, f)
    transfer = RANGED if ranged else {}
    async with _client(hostile, **transfer) as client:
        with pytest.raises(TransferError, match=r"(ended at|returned|Content-Range)"):
            await client.files.download(f.file_id, tmp_path / "x.bin")
    assert _left(tmp_path) == []


# -- ranges and ETags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_range",
    [
        lambda a, b, total: None,
        lambda a, b, total: f"bytes {a + 1}-{b + 1}/{total}",
        lambda a, b, total: f"bytes {a}-{b - 1}/{total}",
        lambda a, b, total: f"bytes {a}-{b}/{total + 1}",
        lambda a, b, total: f"bytes {a}-{b}/*",
        lambda a, b, total: "bytes */1",
        lambda a, b, total: f"items {a}-{b}/{total}",
    ],
    ids=["missing", "shifted", "short", "other-total", "unknown-total", "unsatisfied", "units"],
)
async def test_a_206_with_the_wrong_content_range_writes_nothing(
    hostile: HostileServer, tmp_path: Path, content_range: Any
) -> None:
    body = os.urandom(4 * PART)
    f = serve_file(
        hostile,
        StoredFile("f1", body, name="x.bin", content_crc=_crc(body), content_range=content_range),
    )
    async with _client(hostile, **RANGED) as client:
        with pytest.raises(TransferError, match=r"(Content-Range|stated size)"):
            await client.files.download(f.file_id, tmp_path / "x.bin")
    assert _left(tmp_path) == []


async def test_a_wrong_content_range_on_a_later_range_also_fails(
    hostile: HostileServer, tmp_path: Path
) -> None:
    body = os.urandom(4 * PART)

    def wrong_after_first(a: int, b: int, total: int) -> str:
        return f"bytes {a}-{b}/{total}" if a == 0 else f"bytes 0-{b - a}/{total}"

    f = serve_file(
        hostile,
        StoredFile(
            "f1", body, name="x.bin", content_crc=_crc(body), content_range=wrong_after_first
        ),
    )
    async with _client(hostile, **RANGED) as client:
        with pytest.raises(TransferError, match="Content-Range"):
            await client.files.download(f.file_id, tmp_path / "x.bin")
    assert _left(tmp_path) == []


async def test_an_object_without_an_etag_is_fetched_as_one_stream(
    hostile: HostileServer, tmp_path: Path
) -> None:
    body = os.urandom(6 * PART + 3)
    f = serve_file(hostile, StoredFile("f1", body, name="x.bin", content_crc=_crc(body), etag=None))
    async with _client(hostile, **RANGED) as client:
        path = await client.files.download(f.file_id, tmp_path / "x.bin")
    assert path.read_bytes() == body
    ranges = [r.headers.get("Range") for r in hostile.seen("GET", "/blob/")]
    assert ranges == [f"bytes=0-{PART - 1}", None]  # one probe, then the whole object once
    assert _left(tmp_path) == ["x.bin"]


# -- verification -------------------------------------------------------------------------------


@pytest.mark.parametrize("ranged", [False, True], ids=["stream", "ranges"])
async def test_the_metadata_checksum_verifies_when_the_content_ticket_has_none(
    hostile: HostileServer, tmp_path: Path, ranged: bool
) -> None:
    body = os.urandom(4 * PART)
    corrupt = body[:-1] + bytes([body[-1] ^ 0xFF])
    f = serve_file(
        hostile, StoredFile("f1", body, name="x.bin", served=corrupt, meta_crc=_crc(body))
    )
    transfer = RANGED if ranged else {}
    async with _client(hostile, **transfer) as client:
        with pytest.raises(IntegrityError, match="does not match its CRC32C"):
            await client.files.download(f.file_id, tmp_path / "x.bin")
        (outcome,) = await client.files.download_many([f.file_id], tmp_path / "many")
        assert isinstance(outcome.error, IntegrityError)
        with pytest.raises(IntegrityError):
            await client.files.read_bytes(f.file_id)
    assert _left(tmp_path) == []


@pytest.mark.parametrize("ranged", [False, True], ids=["stream", "ranges"])
async def test_a_download_nothing_can_verify_says_so(
    hostile: HostileServer, tmp_path: Path, ranged: bool, caplog: pytest.LogCaptureFixture
) -> None:
    body = os.urandom(4 * PART)
    f = serve_file(hostile, StoredFile("f1", body, path="run/x.bin"))
    checked = serve_file(hostile, StoredFile("f2", body, path="run/y.bin", meta_crc=_crc(body)))
    transfer = RANGED if ranged else {}
    with caplog.at_level(logging.WARNING, logger="labric"):
        async with _client(hostile, **transfer) as client:
            outcomes = await client.files.download_many([f.file_id, checked.file_id], tmp_path)
    unverified, verified = outcomes
    assert unverified.ok, unverified.error
    assert unverified.unverified
    (warning,) = unverified.warnings
    assert "f1" in warning
    assert "unverified" in warning
    assert verified.ok
    assert not verified.unverified
    assert verified.warnings == ()
    assert [r.getMessage() for r in caplog.records if "unverified" in r.getMessage()] == [warning]
    assert (tmp_path / "run" / "x.bin").read_bytes() == body


async def test_a_storage_checksum_alone_verifies_a_stream(
    hostile: HostileServer, tmp_path: Path
) -> None:
    body = os.urandom(50 * KiB)
    good = serve_file(hostile, StoredFile("f1", body, path="a.bin", goog_crc=_crc(body)))
    bad = serve_file(
        hostile, StoredFile("f2", body, path="b.bin", goog_crc=_crc(body), served=body[::-1])
    )
    async with _client(hostile) as client:
        outcomes = await client.files.download_many([good.file_id, bad.file_id], tmp_path)
    assert outcomes[0].ok
    assert not outcomes[0].unverified
    assert isinstance(outcomes[1].error, IntegrityError)
    assert _left(tmp_path) == ["a.bin"]

"""Metadata and reads at scale, counted in requests (never timed).

``find``/``glob`` over thousands of files are a few listing pages, with no request per file;
sequential reads of an open file are one range request per block (fsspec's read-ahead cache);
``cat_ranges`` resolves each file once and fetches its ranges concurrently, a bounded number at
a time. The large tree is written straight into the server's database (as the listing benchmark
does), since uploading thousands of files would only slow the test down.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from labric.fsspec import LabricFileSystem, ranges
from labric.fsspec.namespace import LISTING_PAGE
from labric.server import ThreadedServer

MiB = 1024 * 1024


def seed(tserver: ThreadedServer, paths: list[str]) -> None:
    """Confirmed files at ``paths``, inserted into the running server's database."""
    server = tserver.server
    conn = sqlite3.connect(server.data_dir.db_path, timeout=30)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO files (id, org_id, file_name, original_path, content_type, "
                "size_bytes, crc32c, status, source_type, created_at, confirmed_at) "
                "VALUES (?, ?, ?, ?, 'text/csv', 12, 'yZRlqg==', 'confirmed', 'job', "
                "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                [
                    (str(uuid.uuid4()), server.default_org_id, p.rsplit("/", 1)[-1], p)
                    for p in paths
                ],
            )
    finally:
        conn.close()


def requests(fs: LabricFileSystem) -> int:
    return sum(client.stats.requests for client in fs._clients.values())


def test_find_and_glob_over_many_files_are_a_few_listing_pages(
    fs: LabricFileSystem, tserver: ThreadedServer, root: str
) -> None:
    count = 2 * LISTING_PAGE + 500
    paths = [f"{root}/plate{i % 7}/read{i:05d}.csv" for i in range(count)]
    seed(tserver, paths)
    pages = -(-count // LISTING_PAGE)
    fs.ls("")  # the client exists, so its counters can be read
    before = requests(fs)

    found = fs.find(root)

    assert found == sorted(paths)
    assert requests(fs) - before == pages  # no request per file or per directory
    before = requests(fs)
    matched = fs.glob(f"{root}/plate3/*.csv")
    assert matched == sorted(p for p in paths if "/plate3/" in p)
    assert requests(fs) - before <= pages
    # Every directory was cached on the way: listing them asks nothing more.
    before = requests(fs)
    assert len(fs.ls(f"{root}/plate3", detail=False)) == len(matched)
    assert requests(fs) - before == 0


@pytest.fixture
def big(upload: Callable[[str, bytes], str], root: str) -> tuple[str, bytes]:
    data = bytes(range(256)) * (4 * MiB // 256)
    path = f"{root}/big.bin"
    upload(path, data)
    return path, data


def test_sequential_reads_are_one_request_per_block(
    fs: LabricFileSystem, big: tuple[str, bytes]
) -> None:
    path, data = big
    block = 512 * 1024
    with fs.open(path, block_size=block, cache_type="readahead") as f:
        before = requests(fs)
        got = b"".join(iter(lambda: f.read(64 * 1024), b""))
    assert got == data
    # The signed URL once, then read-ahead: each range request brings a whole block, however
    # small the reads.
    assert requests(fs) - before == 1 + len(data) // block


def test_cat_ranges_resolves_each_file_once_and_fetches_ranges_concurrently(
    fs: LabricFileSystem,
    upload: Callable[[str, bytes], str],
    root: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blobs = {f"{root}/part{i}.bin": bytes([i]) * 5000 + bytes(range(200)) for i in range(3)}
    for path, data in blobs.items():
        upload(path, data)
    wanted = [(p, s, s + 97) for p in blobs for s in range(0, 5000, 500)]  # 30 ranges
    fs.ls(root)
    in_flight = [0, 0]  # now, most at once
    original = ranges.read_range

    async def counting(*args: Any, **kwargs: Any) -> Any:
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        try:
            return await original(*args, **kwargs)
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(ranges, "read_range", counting)
    before = requests(fs)

    paths, starts, ends = (list(column) for column in zip(*wanted, strict=True))
    got = fs.cat_ranges(paths, starts, ends, batch_size=4)

    assert got == [blobs[p][s:e] for p, s, e in wanted]
    # One listing for the three files, one signed URL each, one request per range.
    assert requests(fs) - before == 1 + len(blobs) + len(wanted)
    assert 1 < in_flight[1] <= 4


def test_cat_ranges_fails_a_missing_file_alone(
    fs: LabricFileSystem, upload: Callable[[str, bytes], str], root: str
) -> None:
    upload(f"{root}/here.bin", b"0123456789")
    got = fs.cat_ranges([f"{root}/here.bin", f"{root}/gone.bin", f"{root}/here.bin"], 2, 5)
    assert got[0] == got[2] == b"234"
    assert isinstance(got[1], FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges([f"{root}/gone.bin"], 0, 1, on_error="raise")

"""Downloads against the local server: unique temporary files, no clobbering, verified outcomes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric.server import LocalServer

from .conftest import PART, make_client


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_files_named_like_temporaries_download_next_to_their_twins(
    tclient: AsyncLabric, tmp_path: Path
) -> None:
    names = {
        "run/data.csv": b"a,b\n1,2\n",
        "run/data.csv.part": b"not a partial file",
        "run/.data.csv.0123456789abcdef.labric-part": b"looks like ours, is not",
        "big/raw.bin": os.urandom(3 * PART + 11),  # ranged
        "big/raw.bin.part": os.urandom(3 * PART + 5),  # ranged too
    }
    uploads = await tclient.files.upload_many(list(names.items()))
    ids = [o.file.file_id for o in uploads if o.file is not None]
    dest = tmp_path / "dl"
    outcomes = await tclient.files.download_many(ids, dest, concurrency=4)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert not any(o.unverified for o in outcomes)  # the local server states every CRC32C
    assert _files(dest) == names
    again = await tclient.files.download_many(ids, dest, skip_existing=True)
    assert all(o.skipped for o in again)
    assert _files(dest) == names


async def test_local_part_files_survive_a_download_of_the_same_name(
    tclient: AsyncLabric, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    small = await tclient.files.upload(make_file("report.csv", 10_000))
    large = await tclient.files.upload(make_file("large.raw", 4 * PART))
    dest = tmp_path / "dl"
    dest.mkdir()
    mine = {"report.csv.part": b"my notes", "large.raw.part": b"my other notes"}
    for name, data in mine.items():
        (dest / name).write_bytes(data)
    for upload in (small, large):
        path = await tclient.files.download(upload.file_id, dest / upload.file_name)
        assert path.stat().st_size == upload.size_bytes
    assert {k: v for k, v in _files(dest).items() if k in mine} == mine
    assert sorted(_files(dest)) == ["large.raw", "large.raw.part", "report.csv", "report.csv.part"]


async def test_concurrent_downloads_to_one_path_never_mix(
    parts_server: LocalServer, make_file: Callable[..., Path], tmp_path: Path
) -> None:
    """Two clients, one final path, no overwrite: one wins whole, the other fails, nothing mixes."""
    source = make_file("same.raw", 6 * PART + 3)
    dest = tmp_path / "dl" / "same.raw"
    dest.parent.mkdir()
    async with (
        make_client(parts_server, tmp_path / "s1") as one,
        make_client(parts_server, tmp_path / "s2") as two,
    ):
        up = await one.files.upload(source)
        results = await asyncio.gather(
            one.files.download(up.file_id, dest),
            two.files.download(up.file_id, dest),
            return_exceptions=True,
        )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) <= 1
    assert all(isinstance(e, FileExistsError) for e in errors), errors
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["same.raw"]


@pytest.mark.parametrize("size", [10_000, 4 * PART], ids=["stream", "ranges"])
async def test_overwrite_replaces_and_no_overwrite_refuses(
    tclient: AsyncLabric, make_file: Callable[..., Path], tmp_path: Path, size: int
) -> None:
    source = make_file("f.bin", size)
    up = await tclient.files.upload(source)
    dest = tmp_path / "dl" / "f.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        await tclient.files.download(up.file_id, dest)
    assert dest.read_bytes() == b"old"
    await tclient.files.download(up.file_id, dest, overwrite=True)
    assert dest.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]

"""Downloads never clobber: unique temporary files, refused hostile names, symlinks not followed.

Every test here runs the client against the hostile server over a real socket, with file names
and storage answers chosen to make a careless client overwrite, escape or mislead.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric, TransferConfig
from labric.errors import TransferError, UnsafeNameError

from ._server import HostileServer, StoredFile, serve_file

KiB = 1024
TEMP = re.compile(r"^\..+\.[0-9a-f]{16}\.labric-part$")


def _client(hostile: HostileServer, **transfer: Any) -> AsyncLabric:
    config = TransferConfig(state_dir=str(hostile.state_dir / "state"), **transfer)
    return hostile.client(transfer=config, max_retries=0)


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: files by content, symlinks by target."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = f"-> {os.readlink(p)}"
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


@pytest.mark.parametrize("part_first", [True, False], ids=["part-first", "part-second"])
async def test_a_platform_file_named_like_a_temporary_file_never_collides(
    hostile: HostileServer, tmp_path: Path, part_first: bool
) -> None:
    plain = serve_file(hostile, StoredFile("f-plain", b"the data", path="run/data.csv"))
    part = serve_file(hostile, StoredFile("f-part", b"the part", path="run/data.csv.part"))
    ids = [part.file_id, plain.file_id] if part_first else [plain.file_id, part.file_id]
    dest = tmp_path / "dest"
    async with _client(hostile) as client:
        outcomes = await client.files.download_many(ids, dest, concurrency=2)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert _tree(dest) == {"run/data.csv": b"the data", "run/data.csv.part": b"the part"}


async def test_two_calls_into_one_folder_keep_both_files(
    hostile: HostileServer, tmp_path: Path
) -> None:
    plain = serve_file(hostile, StoredFile("f-plain", b"plain", path="data.csv"))
    part = serve_file(hostile, StoredFile("f-part", b"part", path="data.csv.part"))
    dest = tmp_path / "dest"
    async with _client(hostile) as client:
        first = await client.files.download_many([plain.file_id], dest)
        second = await client.files.download_many([part.file_id], dest)
        third = await client.files.download_many([plain.file_id], dest, overwrite=True)
    assert [o.ok for o in (*first, *second, *third)] == [True, True, True]
    assert _tree(dest) == {"data.csv": b"plain", "data.csv.part": b"part"}


async def test_an_unrelated_local_part_file_is_never_touched(
    hostile: HostileServer, tmp_path: Path
) -> None:
    report = serve_file(hostile, StoredFile("f-r", b"new report", name="report.csv"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "report.csv.part").write_bytes(b"my own notes")
    async with _client(hostile) as client:
        assert await client.files.download(report.file_id, dest / "report.csv") == (
            dest / "report.csv"
        )
    assert _tree(dest) == {"report.csv": b"new report", "report.csv.part": b"my own notes"}


async def test_the_temporary_file_is_hidden_unique_and_next_to_the_final_path(
    hostile: HostileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    seen: list[list[str]] = []

    async def look(request: web.Request) -> None:
        seen.append(sorted(p.name for p in (dest / "run").iterdir()))

    f = serve_file(hostile, StoredFile("f1", b"x" * 1000, path="run/data.csv", before_body=look))
    async with _client(hostile) as client:
        (outcome,) = await client.files.download_many([f.file_id], dest)
    assert outcome.ok, outcome.error
    ((name,),) = seen
    assert TEMP.match(name), name
    assert name.startswith(".data.csv.")
    assert _tree(dest) == {"run/data.csv": b"x" * 1000}


async def test_two_files_mapping_to_one_path_fail_the_second_not_the_first(
    hostile: HostileServer, tmp_path: Path
) -> None:
    a = serve_file(hostile, StoredFile("f-a", b"first", path="twins/x.csv"))
    b = serve_file(hostile, StoredFile("f-b", b"second", path="/twins//x.csv"))
    dest = tmp_path / "dest"
    async with _client(hostile) as client:
        outcomes = await client.files.download_many([a.file_id, b.file_id], dest, concurrency=1)
    assert outcomes[0].ok, outcomes[0].error
    assert isinstance(outcomes[1].error, TransferError)
    assert "also maps to" in str(outcomes[1].error)
    assert _tree(dest) == {"twins/x.csv": b"first"}


async def test_an_existing_destination_is_kept_without_overwrite(
    hostile: HostileServer, tmp_path: Path
) -> None:
    f = serve_file(hostile, StoredFile("f1", b"server bytes", name="out.bin"))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "out.bin").write_bytes(b"mine")
    async with _client(hostile) as client:
        with pytest.raises(FileExistsError, match="overwrite=True"):
            await client.files.download(f.file_id, dest / "out.bin")
        (outcome,) = await client.files.download_many([f.file_id], dest)
        assert isinstance(outcome.error, FileExistsError)
    assert _tree(dest) == {"out.bin": b"mine"}
    assert not hostile.seen("GET", "/blob/")  # refused before any byte was fetched


@pytest.mark.parametrize("ranged", [False, True], ids=["stream", "ranges"])
async def test_a_file_appearing_during_the_download_is_not_replaced(
    hostile: HostileServer, tmp_path: Path, ranged: bool
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    final = dest / "out.bin"

    async def someone_writes(request: web.Request) -> None:
        if not final.exists():
            final.write_bytes(b"appeared meanwhile")

    body = os.urandom(64 * KiB)
    f = serve_file(hostile, StoredFile("f1", body, name="out.bin", before_body=someone_writes))
    transfer = {"part_size": 16 * KiB, "multipart_threshold": 32 * KiB} if ranged else {}
    async with _client(hostile, **transfer) as client:
        with pytest.raises(FileExistsError, match="appeared during the download"):
            await client.files.download(f.file_id, final)
        assert _tree(dest) == {"out.bin": b"appeared meanwhile"}
        assert await client.files.download(f.file_id, final, overwrite=True) == final
    assert _tree(dest) == {"out.bin": body}


@pytest.mark.parametrize(
    "name",
    [
        "run/evil\nname.csv",
        "run/bell\x07.csv",
        "run/esc\x1b[31m.csv",
        "run/del\x7f.csv",
        "run/c1\x85.csv",
        "invoice\u202egpj.exe",
        "run/\u2066isolated\u2069.csv",
        "run/\u2067x\u2068.csv",
        "a\x00b.csv",
    ],
)
async def test_hostile_names_are_refused_with_the_file_id_and_the_name_escaped(
    hostile: HostileServer, tmp_path: Path, name: str
) -> None:
    bad = serve_file(hostile, StoredFile("f-bad", b"bad", path=name, name=name.rsplit("/")[-1]))
    good = serve_file(hostile, StoredFile("f-good", b"good", path="run/good.csv"))
    dest = tmp_path / "dest"
    async with _client(hostile) as client:
        outcomes = await client.files.download_many([bad.file_id, good.file_id], dest)
        with pytest.raises(UnsafeNameError) as single:
            await client.files.download(bad.file_id, dest)
    error = outcomes[0].error
    assert isinstance(error, UnsafeNameError)
    assert error.file_id == "f-bad"
    assert error.name == name
    message = str(error)
    assert "f-bad" in message
    assert message.isprintable(), message
    assert message.isascii(), message
    assert ascii(name)[1:-1] in message
    assert single.value.file_id == "f-bad"
    assert outcomes[1].ok, outcomes[1].error
    assert _tree(dest) == {"run/good.csv": b"good"}


@pytest.mark.parametrize(
    ("name", "lands"),
    [
        ("/abs/x.csv", "abs/x.csv"),
        ("C:\\data\\x.csv", "data/x.csv"),
        ("\\\\server\\share\\x.csv", "server/share/x.csv"),
        ("a//b/./x.csv", "a/b/x.csv"),
    ],
)
async def test_roots_drives_and_empty_segments_are_dropped_deterministically(
    hostile: HostileServer, tmp_path: Path, name: str, lands: str
) -> None:
    f = serve_file(hostile, StoredFile("f1", b"data", path=name))
    dest = tmp_path / "dest"
    async with _client(hostile) as client:
        (outcome,) = await client.files.download_many([f.file_id], dest)
    assert outcome.ok, outcome.error
    assert _tree(dest) == {lands: b"data"}


@pytest.mark.parametrize("name", ["../x.csv", "a/../../x.csv", "..\\x.csv", "C:..\\x.csv", "/"])
async def test_names_that_leave_or_are_empty_are_refused(
    hostile: HostileServer, tmp_path: Path, name: str
) -> None:
    f = serve_file(hostile, StoredFile("f1", b"data", path=name))
    dest = tmp_path / "dest"
    async with _client(hostile) as client:
        (outcome,) = await client.files.download_many([f.file_id], dest)
    assert isinstance(outcome.error, UnsafeNameError), outcome
    assert "f1" in str(outcome.error)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_a_symlinked_folder_inside_the_destination_is_not_followed(
    hostile: HostileServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    (dest / "run").mkdir(parents=True)
    (dest / "run" / "link").symlink_to(outside, target_is_directory=True)
    f = serve_file(hostile, StoredFile("f1", b"escaped?", path="run/link/deeper/x.csv"))
    g = serve_file(hostile, StoredFile("f2", b"escaped?", path="run/link/x.csv"))
    async with _client(hostile) as client:
        outcomes = await client.files.download_many([f.file_id, g.file_id], dest)
    for outcome in outcomes:
        assert isinstance(outcome.error, UnsafeNameError), outcome
        assert "symlink" in str(outcome.error)
        assert outcome.file_id in str(outcome.error)
    assert list(outside.iterdir()) == []
    assert _tree(dest) == {"run/link": f"-> {outside}"}


async def test_a_symlink_at_the_final_name_is_never_written_through(
    hostile: HostileServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "precious.txt"
    target.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x.csv").symlink_to(target)
    (dest / "dangling.csv").symlink_to(outside / "nothing-here.txt")
    f = serve_file(hostile, StoredFile("f1", b"server", path="x.csv"))
    g = serve_file(hostile, StoredFile("f2", b"server", path="dangling.csv"))
    async with _client(hostile) as client:
        kept = await client.files.download_many([f.file_id, g.file_id], dest)
        assert [type(o.error) for o in kept] == [FileExistsError, FileExistsError]
        assert _tree(outside) == {"precious.txt": b"precious"}
        replaced = await client.files.download_many([f.file_id, g.file_id], dest, overwrite=True)
    assert all(o.ok for o in replaced), [o.error for o in replaced]
    assert _tree(outside) == {"precious.txt": b"precious"}
    assert _tree(dest) == {"dangling.csv": b"server", "x.csv": b"server"}


async def test_a_journalled_temporary_file_is_found_again_and_others_are_left_alone(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """A download cancelled mid-stream removes its temporary file; a rerun never guesses names."""
    dest = tmp_path / "dest"
    dest.mkdir()
    stranger = dest / ".data.csv.0123456789abcdef.labric-part"
    stranger.write_bytes(b"not the SDK's")
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold(request: web.Request) -> None:
        started.set()
        await release.wait()

    f = serve_file(hostile, StoredFile("f1", b"y" * 100_000, name="data.csv", before_body=hold))
    async with _client(hostile) as client:
        task = asyncio.create_task(client.files.download(f.file_id, dest / "data.csv"))
        await started.wait()
        temps = [p.name for p in dest.iterdir() if p != stranger]
        assert len(temps) == 1
        assert TEMP.match(temps[0])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert sorted(p.name for p in dest.iterdir()) == [stranger.name]
        f.before_body = None
        assert await client.files.download(f.file_id, dest / "data.csv") == dest / "data.csv"
    assert _tree(dest) == {stranger.name: b"not the SDK's", "data.csv": b"y" * 100_000}

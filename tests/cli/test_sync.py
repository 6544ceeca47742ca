"""``labric sync up|down``: a directory to the platform and back, skipping identical files."""

from __future__ import annotations

from pathlib import Path

import pytest

from labric import Labric
from labric.server import ThreadedServer

from ._support import call, make_tree

RUN = {
    "a.csv": b"x,y\n1,2\n",
    "sub/b.csv": b"x,y\n3,4\n",
    "sub/deeper/c.bin": bytes(range(256)) * 40,
}


def _by_name(doc: dict[str, object], key: str) -> dict[str, bool]:
    files = doc["files"]
    assert isinstance(files, list)
    return {str(e[key]): bool(e["skipped"]) for e in files}


def test_sync_up_sends_only_what_differs(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = make_tree(tmp_path / "site" / "run7", RUN)

    first = call(capsys, "sync", "up", str(local), "--json")
    assert first.code == 0, first.err
    assert _by_name(first.json(), "name") == {f"run7/{rel}": False for rel in RUN}

    second = call(capsys, "sync", "up", str(local), "--json")
    assert second.code == 0, second.err
    assert _by_name(second.json(), "name") == {f"run7/{rel}": True for rel in RUN}
    assert second.json()["summary"]["bytes_transferred"] == 0
    assert second.err_lines[-1].startswith("sync up: 0 uploaded (0 B), 3 unchanged, 0 failed")

    (local / "sub" / "b.csv").write_bytes(b"x,y\n5,6\n")
    (local / "new.txt").write_bytes(b"new\n")
    third = call(capsys, "sync", "up", str(local), "--json")
    assert third.code == 0, third.err
    assert _by_name(third.json(), "name") == {
        "run7/a.csv": True,
        "run7/new.txt": False,
        "run7/sub/b.csv": False,
        "run7/sub/deeper/c.bin": True,
    }
    with Labric() as client:
        paths = sorted(f.original_path or "" for f in client.files.list())
    # A changed file is a new version on the platform; nothing is ever deleted.
    assert paths == sorted([*(f"run7/{rel}" for rel in RUN), "run7/sub/b.csv", "run7/new.txt"])


def test_sync_down_brings_the_newest_of_each_path_and_skips_identical_files(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_tree(tmp_path / "here" / "run7", RUN)
    assert call(capsys, "sync", "up", str(source), "-q").code == 0
    (source / "a.csv").write_bytes(b"x,y\n9,9\n")  # a second version of run7/a.csv
    assert call(capsys, "sync", "up", str(source), "-q").code == 0
    make_tree(tmp_path, {"unrelated/run7x/z.csv": b"z\n"})
    assert call(capsys, "files", "upload", str(tmp_path / "unrelated" / "run7x"), "-q").code == 0

    copy = tmp_path / "there" / "run7"
    first = call(capsys, "sync", "down", str(copy), "--json")
    assert first.code == 0, first.err
    # Four platform files under run7/ (a.csv twice): the newest of each of the three paths.
    assert [e["skipped"] for e in first.json()["files"]] == [False] * 3
    for rel in RUN:
        assert (copy / rel).read_bytes() == (source / rel).read_bytes()
    assert not (tmp_path / "there" / "run7x").exists()  # a prefix match is not a path match

    (copy / "sub" / "b.csv").write_bytes(b"changed here\n")
    (copy / "local-only.txt").write_bytes(b"stays\n")
    second = call(capsys, "sync", "down", str(copy), "--json")
    assert second.code == 0, second.err
    skipped = {
        Path(e["path"]).relative_to(copy).as_posix(): e["skipped"] for e in second.json()["files"]
    }
    assert skipped == {"a.csv": True, "sub/b.csv": False, "sub/deeper/c.bin": True}
    assert (copy / "sub" / "b.csv").read_bytes() == RUN["sub/b.csv"]
    assert (copy / "local-only.txt").read_bytes() == b"stays\n"


def test_sync_of_a_missing_directory(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "sync", "up", str(tmp_path / "nope"))
    assert done.code == 4
    assert done.err == f"labric: error: not a directory: {tmp_path / 'nope'}\n"


def test_sync_down_of_nothing(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = call(capsys, "sync", "down", str(tmp_path / "empty"), "--json")
    assert done.code == 4
    assert done.out == ""
    assert done.err_lines == [
        "labric: error: nothing on the platform matches empty/* (sync down takes the files that "
        "sync up empty stored); nothing was downloaded"
    ]
    assert not (tmp_path / "empty").exists()


def test_sync_needs_a_direction(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as excinfo:
        call(capsys, "sync", str(tmp_path))
    assert excinfo.value.code == 2


def test_sync_with_an_instrument(
    env: dict[str, str],
    server: ThreadedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reader = server.create_instrument("reader")
    mine = make_tree(tmp_path / "a" / "run7", {"x.csv": b"1\n"})
    other = make_tree(tmp_path / "b" / "run7", {"y.csv": b"2\n"})
    assert call(capsys, "sync", "up", str(mine), "--instrument", reader, "-q").code == 0
    assert call(capsys, "sync", "up", str(other), "-q").code == 0
    with Labric() as client:
        attached = {f.original_path for f in client.files.list(instrument_id=reader)}
    assert attached == {"run7/x.csv"}

    copy = tmp_path / "c" / "run7"
    done = call(capsys, "sync", "down", str(copy), "--instrument", reader, "--json")
    assert done.code == 0, done.err
    assert sorted(p.name for p in copy.iterdir()) == ["x.csv"]

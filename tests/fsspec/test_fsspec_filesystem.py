"""The filesystem's own behaviour against the local server: paths, listings, reads, writes."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import fsspec
import pytest
from fsspec.callbacks import Callback

from labric import ConfigurationError, RetryPolicy
from labric._transfer.checksum import crc32c
from labric.errors import IntegrityError, TransferError
from labric.fsspec import LabricFile, LabricFileSystem
from labric.server import ThreadedServer
from labric.server.core.faults import FaultConfig

Upload = Callable[[str, bytes], str]


def tree_of(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by its relative POSIX path."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def seeded(root: str, upload: Upload) -> dict[str, bytes]:
    """A small run: a file at the top, a folder of plates, one folder deeper."""
    files = {
        f"{root}/summary.txt": b"3 plates\n",
        f"{root}/plates/p1.csv": b"well,od\nA1,0.1\n",
        f"{root}/plates/p2.csv": b"well,od\nA1,0.2\nA2,0.3\n",
        f"{root}/plates/raw/p1.bin": bytes(range(256)),
    }
    for path, data in files.items():
        upload(path, data)
    return files


# -- registration ------------------------------------------------------------------------------


def test_protocol_resolves_through_the_entry_point(
    options: dict[str, str], root: str, upload: Upload
) -> None:
    upload(f"{root}/a.csv", b"x\n1\n")
    assert fsspec.get_filesystem_class("labric") is LabricFileSystem
    fs = fsspec.filesystem("labric", **options)
    try:
        assert isinstance(fs, LabricFileSystem)
        with fsspec.open(f"labric://{root}/a.csv", "rt", **options) as f:
            assert f.read() == "x\n1\n"
        assert fs.protocol == "labric"
        assert fs.unstrip_protocol(f"{root}/a.csv") == f"labric://{root}/a.csv"
    finally:
        fs.close()
        LabricFileSystem.clear_instance_cache()


def test_repr_names_the_server_but_never_the_secret(
    fs: LabricFileSystem, tserver: ThreadedServer
) -> None:
    secret = tserver.admin_key.rsplit("_", 1)[1]
    assert tserver.base_url in repr(fs)
    assert secret not in repr(fs)


def test_a_missing_key_fails_at_construction_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="LABRIC_API_KEY"):
        LabricFileSystem(skip_instance_cache=True)


def test_key_and_url_come_from_the_environment(
    tserver: ThreadedServer, root: str, upload: Upload, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(f"{root}/env.txt", b"from the environment")
    monkeypatch.setenv("LABRIC_API_KEY", tserver.admin_key)
    monkeypatch.setenv("LABRIC_API_BASE_URL", tserver.base_url)
    with LabricFileSystem(skip_instance_cache=True) as fs:
        assert fs.cat(f"labric://{root}/env.txt") == b"from the environment"


# -- listings ------------------------------------------------------------------------------------


def test_ls_shows_files_and_pseudo_directories(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    assert fs.ls(root, detail=False) == [f"{root}/plates", f"{root}/summary.txt"]
    assert fs.ls(f"labric://{root}/plates/", detail=False) == [
        f"{root}/plates/p1.csv",
        f"{root}/plates/p2.csv",
        f"{root}/plates/raw",
    ]
    detail = {e["name"]: e for e in fs.ls(f"{root}/plates")}
    assert detail[f"{root}/plates/raw"]["type"] == "directory"
    p2 = detail[f"{root}/plates/p2.csv"]
    assert p2["type"] == "file"
    assert p2["size"] == len(seeded[f"{root}/plates/p2.csv"])
    assert p2["file_id"]
    assert p2["original_path"] == f"{root}/plates/p2.csv"
    assert root in fs.ls("", detail=False)


def test_ls_of_a_file_is_that_file_and_of_nothing_is_an_error(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    [entry] = fs.ls(f"{root}/summary.txt")
    assert entry["name"] == f"{root}/summary.txt"
    assert entry["type"] == "file"
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{root}/nothing-here")


def test_info_exists_isdir_isfile(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    info = fs.info(f"labric://{root}/plates/p1.csv")
    assert info["type"] == "file"
    assert info["size"] == len(seeded[f"{root}/plates/p1.csv"])
    assert info["crc32c"]
    assert info["created"] is not None
    assert fs.info(f"{root}/plates") == {"name": f"{root}/plates", "type": "directory", "size": 0}
    assert fs.isdir(f"{root}/plates/raw")
    assert not fs.isdir(f"{root}/plates/p1.csv")
    assert fs.isfile(f"{root}/plates/p1.csv")
    assert fs.exists(f"{root}/plates")
    assert not fs.exists(f"{root}/plates/p9.csv")
    # A name that is only a prefix of a folder is neither file nor folder.
    assert not fs.exists(f"{root}/pla")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/plates/p9.csv")


def test_find_and_glob_use_the_tree(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    assert fs.find(root) == sorted(seeded)
    assert fs.find(root, maxdepth=1) == [f"{root}/summary.txt"]
    assert fs.find(root, maxdepth=2, withdirs=True) == [
        root,
        f"{root}/plates",
        f"{root}/plates/p1.csv",
        f"{root}/plates/p2.csv",
        f"{root}/plates/raw",
        f"{root}/summary.txt",
    ]
    assert fs.glob(f"labric://{root}/plates/*.csv") == [
        f"{root}/plates/p1.csv",
        f"{root}/plates/p2.csv",
    ]
    assert fs.glob(f"{root}/**/p1.*") == [f"{root}/plates/p1.csv", f"{root}/plates/raw/p1.bin"]
    assert fs.find(f"{root}/summary.txt") == [f"{root}/summary.txt"]
    assert fs.du(root) == sum(len(v) for v in seeded.values())


def test_listings_are_cached_until_a_write_or_a_refresh(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes], upload: Upload
) -> None:
    before = fs.ls(f"{root}/plates", detail=False)
    upload(f"{root}/plates/p3.csv", b"well,od\n")  # by another client: this cache cannot know
    assert fs.ls(f"{root}/plates", detail=False) == before
    assert f"{root}/plates/p3.csv" in fs.ls(f"{root}/plates", detail=False, refresh=True)
    fs.pipe(f"{root}/plates/p4.csv", b"well,od\n")  # through the filesystem: invalidated
    assert f"{root}/plates/p4.csv" in fs.ls(f"{root}/plates", detail=False)
    fs.ls(root)
    fs.invalidate_cache(f"{root}/plates")  # that listing, those under it and those above it
    assert f"{root}/plates" not in fs.dircache
    assert root not in fs.dircache
    fs.ls(f"{root}/plates/raw")
    fs.invalidate_cache(root)
    assert f"{root}/plates/raw" not in fs.dircache
    fs.ls(root)
    fs.invalidate_cache()
    assert not fs.dircache


# -- paths shared by several files -----------------------------------------------------------


def test_the_newest_file_at_a_path_wins_and_older_ones_stay_reachable_by_id(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    path = f"{root}/plate1.csv"
    first = upload(path, b"run 1\n")
    second = upload(path, b"run 2, newer\n")
    assert fs.info(path)["file_id"] == second
    assert fs.cat(path) == b"run 2, newer\n"
    assert fs.ls(root, detail=False) == [path]  # one entry, not one per upload
    assert fs.cat(f"labric://.id/{first}") == b"run 1\n"
    assert fs.info(f".id/{first}")["original_path"] == path
    with fs.open(f".id/{first}") as f:
        assert f.read() == b"run 1\n"
    assert ".id" not in fs.ls("", detail=False)
    # rm of a path removes every file at it, so the path is gone afterwards.
    fs.rm(path)
    assert not fs.exists(path)
    assert not fs.exists(f".id/{first}")


def test_rm_of_an_id_path_deletes_only_that_file(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    path = f"{root}/plate1.csv"
    older = upload(path, b"old\n")
    upload(path, b"new\n")
    fs.rm(f".id/{older}")
    assert fs.cat(path) == b"new\n"
    with pytest.raises(FileNotFoundError):
        fs.info(f".id/{older}")


# -- reading ------------------------------------------------------------------------------------


@pytest.fixture
def blob(root: str, upload: Upload) -> tuple[str, bytes]:
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 123)
    path = f"{root}/big.bin"
    upload(path, data)
    return path, data


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 10),
        (100, 200),
        (5, None),
        (-100, None),
        (None, -7),
        (-300, -200),
        (3 * 1024 * 1024, 10**9),  # past the end: clamped
        (50, 50),  # empty
        (10**9, None),  # entirely past the end
    ],
)
def test_cat_file_byte_ranges_match_python_slices(
    fs: LabricFileSystem, blob: tuple[str, bytes], start: int | None, end: int | None
) -> None:
    path, data = blob
    assert fs.cat_file(path, start=start, end=end) == data[start:end]


def storage_spy(fs: LabricFileSystem, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record ``(status, Content-Length, Range)`` of every storage request the client makes.

    The server counts bytes sent only after the body went out, which races with the client
    reading it; the response's own headers say what crossed the wire, deterministically.
    """
    [client] = fs._clients.values()
    original = client._transport.stream
    seen: list[Any] = []

    @contextlib.asynccontextmanager
    async def stream(method: str, url: str, **kwargs: Any) -> AsyncIterator[Any]:
        async with original(method, url, **kwargs) as resp:
            length = int(resp.headers["Content-Length"])
            seen.append((resp.status, length, (kwargs.get("headers") or {}).get("Range")))
            yield resp

    monkeypatch.setattr(client._transport, "stream", stream)
    return seen


def test_a_range_moves_only_its_bytes(
    fs: LabricFileSystem, blob: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = blob
    fs.info(path)  # opens the client
    seen = storage_spy(fs, monkeypatch)
    assert fs.cat_file(path, start=1000, end=1100) == data[1000:1100]
    assert seen == [(206, 100, "bytes=1000-1099")]


def test_whole_cat_and_cat_of_many(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    assert fs.cat(f"{root}/plates/p1.csv") == seeded[f"{root}/plates/p1.csv"]
    many = fs.cat(f"{root}/plates/*.csv")
    assert many == {k: v for k, v in seeded.items() if k.endswith(".csv")}
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"{root}/plates")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{root}/plates/p9.csv")


def test_open_seek_read_are_range_requests(
    fs: LabricFileSystem, blob: tuple[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = blob
    block = 64 * 1024
    with fs.open(f"labric://{path}", block_size=block) as f:
        assert isinstance(f, LabricFile)
        assert f.size == len(data)
        seen = storage_spy(fs, monkeypatch)
        f.seek(2_000_000)
        assert f.read(10) == data[2_000_000:2_000_010]
        assert f.tell() == 2_000_010
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        f.seek(10, os.SEEK_SET)
        f.seek(20, os.SEEK_CUR)
        assert f.read(3) == data[30:33]
    assert {status for status, _, _ in seen} == {206}
    assert sum(length for _, length, _ in seen) <= 3 * block  # three blocks, not the 3 MiB
    with fs.open(path) as f:
        assert f.read() == data


def test_readline_and_iteration_of_an_open_file(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    with fs.open(f"{root}/plates/p2.csv", "rb") as f:
        assert f.readline() == b"well,od\n"
        assert list(f) == [b"A1,0.2\n", b"A2,0.3\n"]
    with fs.open(f"{root}/plates/p2.csv", "r") as text:
        assert text.read().splitlines() == ["well,od", "A1,0.2", "A2,0.3"]


def test_open_rejects_directories_and_unknown_modes(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    with pytest.raises(IsADirectoryError):
        fs.open(f"{root}/plates")
    with pytest.raises(ValueError, match="not supported"):
        fs.open(f"{root}/summary.txt", "ab")


def test_ukey_and_checksum_come_from_crc32c(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    path = f"{root}/a.txt"
    upload(path, b"first")
    assert fs.checksum(path) == crc32c(b"first")
    key = fs.ukey(path)
    upload(path, b"second")
    fs.invalidate_cache()
    assert fs.checksum(path) == crc32c(b"second")
    assert fs.ukey(path) != key
    assert fs.modified(path) == fs.info(path)["created"]


# -- get ------------------------------------------------------------------------------------------


def test_get_recursive_reproduces_the_tree(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes], tmp_path: Path
) -> None:
    dest = tmp_path / "back"
    fs.get(f"labric://{root}", str(dest), recursive=True)  # dest is new: the contents go in it
    assert tree_of(dest) == {k.removeprefix(f"{root}/"): v for k, v in seeded.items()}
    again = tmp_path / "existing"
    again.mkdir()
    fs.get(f"{root}/plates", str(again), recursive=True)  # dest exists: the folder goes in it
    assert tree_of(again) == {
        k.removeprefix(f"{root}/"): v for k, v in seeded.items() if "/plates/" in k
    }
    # Nothing of the staging directory is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "existing"]


def test_get_one_file_a_glob_and_lists(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes], tmp_path: Path
) -> None:
    one = tmp_path / "one.csv"
    fs.get(f"{root}/plates/p1.csv", str(one))
    assert one.read_bytes() == seeded[f"{root}/plates/p1.csv"]
    fs.get(f"{root}/plates/p2.csv", str(one))  # overwrites, as fsspec's get does
    assert one.read_bytes() == seeded[f"{root}/plates/p2.csv"]
    globbed = tmp_path / "csv"
    fs.get(f"{root}/plates/*.csv", str(globbed) + "/")
    assert tree_of(globbed) == {
        "p1.csv": seeded[f"{root}/plates/p1.csv"],
        "p2.csv": seeded[f"{root}/plates/p2.csv"],
    }
    listed = [str(tmp_path / "l" / "x"), str(tmp_path / "l" / "y")]
    fs.get([f"{root}/summary.txt", f"{root}/plates/raw/p1.bin"], listed)
    assert Path(listed[0]).read_bytes() == seeded[f"{root}/summary.txt"]
    assert Path(listed[1]).read_bytes() == seeded[f"{root}/plates/raw/p1.bin"]
    with pytest.raises(FileNotFoundError):
        fs.get(f"{root}/nothing.csv", str(tmp_path / "nothing.csv"))


def test_get_of_two_versions_of_one_path(
    fs: LabricFileSystem, root: str, upload: Upload, tmp_path: Path
) -> None:
    old = upload(f"{root}/plate.csv", b"old\n")
    new = upload(f"{root}/plate.csv", b"new\n")
    dests = [str(tmp_path / "old.csv"), str(tmp_path / "new.csv"), str(tmp_path / "latest.csv")]
    fs.get([f".id/{old}", f".id/{new}", f"{root}/plate.csv"], dests)
    assert [Path(d).read_bytes() for d in dests] == [b"old\n", b"new\n", b"new\n"]


def test_get_file_into_a_file_object(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes], tmp_path: Path
) -> None:
    with (tmp_path / "out.bin").open("wb") as out:
        fs.get_file(f"{root}/plates/raw/p1.bin", out)
    assert (tmp_path / "out.bin").read_bytes() == seeded[f"{root}/plates/raw/p1.bin"]


def test_get_refuses_platform_names_that_leave_the_destination(
    fs: LabricFileSystem, root: str, upload: Upload, tmp_path: Path
) -> None:
    upload(f"{root}/a.txt", b"inside")
    upload(f"{root}/../escape.txt", b"outside")  # a name is data: the server keeps it as given
    dest = tmp_path / "dest"
    with pytest.raises(TransferError, match="outside"):
        fs.get(root, str(dest), recursive=True)
    assert not (tmp_path / "escape.txt").exists()
    assert not dest.exists()


# -- put, pipe, write -------------------------------------------------------------------------


def test_put_recursive_uploads_the_tree_in_one_call(
    fs: LabricFileSystem, root: str, tmp_path: Path
) -> None:
    run = tmp_path / "run7"
    (run / "plates").mkdir(parents=True)
    for n in range(4):
        (run / "plates" / f"p{n}.csv").write_bytes(f"well,od\nA1,0.{n}\n".encode())
    (run / "notes.txt").write_bytes(b"ok\n")
    fs.put(str(run), f"labric://{root}/", recursive=True)  # dest "dir/": the folder goes in it
    expected = {f"{root}/run7/{k}": v for k, v in tree_of(run).items()}
    assert fs.find(root) == sorted(expected)
    assert fs.cat(sorted(expected)) == expected
    executions = {fs.info(p)["job_execution_id"] for p in expected}
    assert len(executions) == 1  # one upload_many: one execution records the batch


def test_put_file_pipe_and_create_mode(fs: LabricFileSystem, root: str, tmp_path: Path) -> None:
    local = tmp_path / "a.csv"
    local.write_bytes(b"a,b\n1,2\n")
    fs.put_file(str(local), f"{root}/a.csv")
    assert fs.cat(f"{root}/a.csv") == b"a,b\n1,2\n"
    assert fs.info(f"{root}/a.csv")["content_type"] == "text/csv"
    fs.pipe(f"{root}/b.bin", b"\x00\x01")
    assert fs.cat(f"{root}/b.bin") == b"\x00\x01"
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{root}/b.bin", b"again", mode="create")
    with pytest.raises(FileExistsError):
        fs.put_file(str(local), f"{root}/a.csv", mode="create")
    fs.pipe_file(f"{root}/c.bin", b"fresh", mode="create")
    assert fs.cat(f"{root}/c.bin") == b"fresh"


def test_write_mode_uploads_on_close(fs: LabricFileSystem, root: str) -> None:
    with fs.open(f"{root}/w.csv", "wb", block_size=5 * 1024 * 1024) as f:
        for n in range(1000):
            f.write(f"{n},{n * n}\n".encode())
        assert not fs.exists(f"{root}/w.csv")  # nothing appears before close
    assert fs.cat(f"{root}/w.csv") == b"".join(f"{n},{n * n}\n".encode() for n in range(1000))
    with fsspec.open(f"labric://{root}/t.txt", "w", **fs.storage_options) as text:
        text.write("written as text\n")
    assert fs.cat(f"{root}/t.txt") == b"written as text\n"
    with pytest.raises(FileExistsError):
        fs.open(f"{root}/w.csv", "xb")
    with fs.open(f"{root}/empty", "wb"):
        pass
    assert fs.info(f"{root}/empty")["size"] == 0


def test_paths_a_file_cannot_take(fs: LabricFileSystem, root: str) -> None:
    with pytest.raises(ValueError, match="id"):
        fs.pipe(".id/abc", b"x")
    with pytest.raises(ValueError, match="path"):
        fs.pipe("", b"x")


# -- rm -----------------------------------------------------------------------------------------


def test_rm_files_directories_and_errors(
    fs: LabricFileSystem, root: str, seeded: dict[str, bytes]
) -> None:
    fs.rm(f"labric://{root}/summary.txt")
    assert not fs.exists(f"{root}/summary.txt")
    with pytest.raises(IsADirectoryError):
        fs.rm(f"{root}/plates")
    fs.rm(f"{root}/plates/*.csv")
    assert fs.find(root) == [f"{root}/plates/raw/p1.bin"]
    fs.rm(root, recursive=True)
    assert not fs.exists(root)
    assert fs.find(root) == []
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{root}/summary.txt")


# -- failures while reading ----------------------------------------------------------------------


def test_an_expired_download_url_is_renewed_once(
    fs: LabricFileSystem, blob: tuple[str, bytes]
) -> None:
    path, data = blob
    with fs.open(path, block_size=1024, cache_type="none") as f:
        assert f.read(4) == data[:4]
        assert f._content is not None
        # A URL whose signature no longer holds is refused (403), as an expired one is.
        refused = f._content.download_url + "0"
        f._content = attrs.evolve(f._content, download_url=refused)
        f.seek(100_000)
        assert f.read(4) == data[100_000:100_004]
        assert f._content.download_url != refused


def test_an_open_file_is_pinned_to_the_version_first_read(
    fs: LabricFileSystem, blob: tuple[str, bytes]
) -> None:
    path, data = blob
    with fs.open(path, block_size=1024, cache_type="none") as f:
        assert f.read(4) == data[:4]
        assert f._etag is not None
        f._etag = '"another-version"'  # as if the object had been replaced since
        f.seek(200_000)
        with pytest.raises(IntegrityError, match="changed"):
            f.read(4)


def test_reads_and_gets_ride_out_storage_faults(
    options: dict[str, str],
    tserver: ThreadedServer,
    blob: tuple[str, bytes],
    tmp_path: Path,
) -> None:
    path, data = blob
    retry = RetryPolicy(max_retries=8, initial_delay=0.001, max_delay=0.01)
    # Client options pass through to the client the filesystem opens.
    with LabricFileSystem(**options, retry=retry, skip_instance_cache=True) as fs:
        fs.info(path)
        tserver.reset_stats()
        tserver.faults.update(FaultConfig(error=0.3, reset=0.1, scope="storage", seed=11))
        try:
            with fs.open(path, block_size=4096, cache_type="none") as f:
                for offset in (0, 70_000, 1_500_000, 3_000_000):
                    f.seek(offset)
                    assert f.read(1000) == data[offset : offset + 1000]
            fs.get(path, str(tmp_path / "big.bin"))
            statuses = tserver.stats["requests"]["by_status"]
        finally:
            tserver.faults.update(FaultConfig())
    assert (tmp_path / "big.bin").read_bytes() == data
    assert {"0", "500", "503"} & set(statuses)  # faults were injected, and retried


# -- bulk options ----------------------------------------------------------------------------------


def test_bulk_calls_report_to_fsspec_callbacks_and_honour_create_mode(
    fs: LabricFileSystem, root: str, tmp_path: Path
) -> None:
    local = tmp_path / "many"
    local.mkdir()
    for n in range(6):
        (local / f"{n}.txt").write_text(str(n))
    up = Callback()
    fs.put(str(local), f"{root}/", recursive=True, callback=up)
    assert (up.size, up.value) == (6, 6)
    down = Callback()
    fs.get(f"{root}/many", str(tmp_path / "back"), recursive=True, callback=down)
    assert (down.size, down.value) == (6, 6)
    assert tree_of(tmp_path / "back") == tree_of(local)
    with pytest.raises(FileExistsError):
        fs.put(str(local), f"{root}/", recursive=True, mode="create")


def test_top_level_files_go_into_existing_directories(
    fs: LabricFileSystem, root: str, tmp_path: Path
) -> None:
    local = tmp_path / "f.csv"
    local.write_bytes(b"top\n")
    name = f"{root}.csv"  # a file at the top level: its path has no "/"
    fs.put(str(local), name)
    out = tmp_path / "out"
    out.mkdir()
    fs.get(name, str(out))  # into the directory, as cp does
    assert (out / name).read_bytes() == b"top\n"
    at_root = tmp_path / f"{root}-root.csv"
    at_root.write_bytes(b"root\n")
    fs.put(str(at_root), "/")  # to the root: the file keeps its name
    assert fs.cat(at_root.name) == b"root\n"
    assert fs.info(at_root.name)["original_path"] == at_root.name

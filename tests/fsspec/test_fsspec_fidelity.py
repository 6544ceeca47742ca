"""``labric://`` behaving as object-store filesystems do: fresh reads after other writers,
copy and move, overwrites that replace, and directory semantics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from labric import Labric
from labric.fsspec import LabricFileSystem
from labric.server import LocalServer

Upload = Callable[[str, bytes], str]


def files_at(sdk: Labric, path: str) -> list[str]:
    """The ids of every file the server holds at exactly ``path``, newest first."""
    return [f.file_id for f in sdk.files.list(query=path) if f.original_path.lstrip("/") == path]


# -- fresh reads -------------------------------------------------------------------------------


def test_a_file_replaced_by_another_client_after_ls_is_read_fresh(
    fs: LabricFileSystem, root: str, upload: Upload, options: dict[str, str]
) -> None:
    path = f"{root}/run/plate1.csv"
    upload(path, b"well,od\nA1,0.1\n")
    assert fs.ls(f"{root}/run", detail=False) == [path]
    assert fs.cat(path) == b"well,od\nA1,0.1\n"
    newer = upload(path, b"well,od\nA1,0.9\n")  # another client: this filesystem's cache is stale
    assert fs.info(path)["file_id"] == newer
    assert fs.cat(path) == b"well,od\nA1,0.9\n"
    with fs.open(path) as f:
        assert f.read() == b"well,od\nA1,0.9\n"
    # pandas gets the same (cached) instance for the same options.
    frame = pd.read_csv(f"labric://{path}", storage_options=options)
    assert frame["od"].tolist() == [0.9]
    assert fs.ukey(path).startswith(f"{newer}:")
    # The listing that held the old file was dropped, so ls shows the new one too.
    assert fs.ls(f"{root}/run")[0]["file_id"] == newer


def test_a_file_deleted_by_another_client_is_gone(
    fs: LabricFileSystem, root: str, upload: Upload, sdk: Labric
) -> None:
    path = f"{root}/gone.csv"
    file_id = upload(path, b"x\n")
    assert fs.ls(root, detail=False) == [path]
    sdk.files.delete(file_id)
    assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.open(path)
    with pytest.raises(FileNotFoundError):
        fs.cat(path)
    assert not fs.exists(root)  # its last file went, and with it the implied directory


def test_own_writes_and_deletes_are_seen_at_once(fs: LabricFileSystem, root: str) -> None:
    path = f"{root}/own.txt"
    fs.pipe(path, b"one")
    fs.ls(root)
    fs.pipe(path, b"two")
    assert fs.cat(path) == b"two"
    assert fs.ls(root)[0]["size"] == 3
    fs.rm(path)
    assert not fs.exists(path)
    with pytest.raises(FileNotFoundError):
        fs.cat(path)


def test_ls_and_find_stay_cached_while_file_lookups_are_fresh(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    upload(f"{root}/a.csv", b"a")
    fs.find(root)
    upload(f"{root}/b.csv", b"b")  # another client, after the listing
    assert fs.ls(root, detail=False) == [f"{root}/a.csv"]  # listings: until refreshed
    assert fs.exists(f"{root}/b.csv")  # one file: asked afresh
    assert fs.ls(root, detail=False, refresh=True) == [f"{root}/a.csv", f"{root}/b.csv"]


# -- copy, move, rename --------------------------------------------------------------------------


def test_copy_of_a_file_is_a_new_file_with_the_same_bytes(
    fs: LabricFileSystem, root: str, upload: Upload, sdk: Labric
) -> None:
    source = f"{root}/raw/plate1.csv"
    source_id = upload(source, b"well,od\nA1,0.1\n")
    fs.cp(source, f"{root}/clean/plate1.csv")
    copied = fs.info(f"{root}/clean/plate1.csv")
    assert copied["file_id"] != source_id
    assert copied["crc32c"] == fs.info(source)["crc32c"]
    assert fs.cat(f"{root}/clean/plate1.csv") == b"well,od\nA1,0.1\n"
    assert files_at(sdk, source) == [source_id]  # the source is untouched
    # Into an existing directory, a file keeps its name; a copy by id works too.
    fs.copy(f".id/{source_id}", f"{root}/clean/")
    assert fs.cat(f"{root}/clean/{source_id}") == b"well,od\nA1,0.1\n"
    with pytest.raises(FileNotFoundError):
        fs.cp(f"{root}/raw/missing.csv", f"{root}/clean/missing.csv")


def test_copy_onto_an_existing_file_replaces_it(
    fs: LabricFileSystem, root: str, upload: Upload, sdk: Labric
) -> None:
    upload(f"{root}/a.csv", b"new")
    upload(f"{root}/b.csv", b"old")
    fs.cp(f"{root}/a.csv", f"{root}/b.csv")
    assert fs.cat(f"{root}/b.csv") == b"new"
    assert len(files_at(sdk, f"{root}/b.csv")) == 1


def test_recursive_copy_and_move_of_a_tree(
    fs: LabricFileSystem, root: str, upload: Upload, sdk: Labric
) -> None:
    tree = {"run/a.csv": b"a", "run/plates/p1.csv": b"p1", "run/plates/raw/p1.bin": b"\x00\x01"}
    for name, data in tree.items():
        upload(f"{root}/{name}", data)
    fs.copy(f"{root}/run", f"{root}/backup", recursive=True)
    assert fs.find(f"{root}/backup") == sorted(
        f"{root}/backup/{name.removeprefix('run/')}" for name in tree
    )
    fs.mv(f"{root}/run", f"{root}/moved", recursive=True)
    assert not fs.exists(f"{root}/run")
    assert {p: fs.cat(p) for p in fs.find(f"{root}/moved")} == {
        f"{root}/moved/{name.removeprefix('run/')}": data for name, data in tree.items()
    }
    assert all(not files_at(sdk, f"{root}/{name}") for name in tree)


def test_mv_and_rename_of_a_file(fs: LabricFileSystem, root: str, upload: Upload) -> None:
    upload(f"{root}/draft.csv", b"x,y\n")
    fs.rename(f"{root}/draft.csv", f"{root}/final.csv")
    assert fs.ls(root, detail=False) == [f"{root}/final.csv"]
    fs.mv(f"{root}/final.csv", f"{root}/done/final.csv")
    assert fs.cat(f"{root}/done/final.csv") == b"x,y\n"
    assert not fs.exists(f"{root}/final.csv")
    with pytest.raises(FileNotFoundError):
        fs.mv(f"{root}/final.csv", f"{root}/again.csv")


# -- overwrites ----------------------------------------------------------------------------------


def test_writes_to_an_existing_path_replace_it(
    fs: LabricFileSystem, root: str, sdk: Labric, tmp_path: Path
) -> None:
    path = f"{root}/out.txt"
    fs.pipe(path, b"one")
    fs.pipe(path, b"two")
    with fs.open(path, "wb") as f:
        f.write(b"three")
    local = tmp_path / "out.txt"
    local.write_bytes(b"four")
    fs.put(str(local), path)
    fs.put_file(str(local), path)
    assert fs.cat(path) == b"four"
    assert len(files_at(sdk, path)) == 1


def test_keep_versions_keeps_the_older_files(
    options: dict[str, str], root: str, sdk: Labric
) -> None:
    with LabricFileSystem(keep_versions=True, skip_instance_cache=True, **options) as fs:
        path = f"{root}/log.txt"
        fs.pipe(path, b"one")
        fs.pipe(path, b"two")
        assert fs.cat(path) == b"two"
        first = files_at(sdk, path)[-1]
        assert len(files_at(sdk, path)) == 2
        assert fs.cat(f".id/{first}") == b"one"


def test_touch_truncate_false_leaves_an_existing_file(
    fs: LabricFileSystem, root: str, sdk: Labric
) -> None:
    path = f"{root}/marker"
    fs.pipe(path, b"data")
    before = files_at(sdk, path)
    fs.touch(path, truncate=False)
    assert files_at(sdk, path) == before
    assert fs.cat(path) == b"data"
    fs.touch(f"{root}/new", truncate=False)
    assert fs.cat(f"{root}/new") == b""
    fs.touch(path)  # truncating: replaced by an empty file
    assert fs.cat(path) == b""
    assert len(files_at(sdk, path)) == 1


def test_pandas_to_csv_twice_leaves_one_file(
    fs: LabricFileSystem, root: str, sdk: Labric, options: dict[str, str]
) -> None:
    url = f"labric://{root}/summary.csv"
    pd.DataFrame({"od": [0.1]}).to_csv(url, index=False, storage_options=options)
    pd.DataFrame({"od": [0.2, 0.3]}).to_csv(url, index=False, storage_options=options)
    assert pd.read_csv(url, storage_options=options)["od"].tolist() == [0.2, 0.3]
    assert len(files_at(sdk, f"{root}/summary.csv")) == 1


def test_parquet_overwrite_leaves_one_file(
    fs: LabricFileSystem, root: str, sdk: Labric, options: dict[str, str]
) -> None:
    url = f"labric://{root}/plates.parquet"
    for scale in (1, 2):
        frame = pd.DataFrame({"plate": [1, 1, 2], "od": [0.1 * scale, 0.2, 0.3]})
        frame.to_parquet(url, storage_options=options)  # pyarrow, through fsspec
    assert fs.find(root) == [f"{root}/plates.parquet"]
    assert len(files_at(sdk, f"{root}/plates.parquet")) == 1
    back = pd.read_parquet(url, storage_options=options)
    assert back["od"].tolist() == [0.2, 0.2, 0.3]


# -- directories ---------------------------------------------------------------------------------


def test_directories_are_implied_as_in_object_stores(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    upload(f"{root}/run/a.csv", b"a")
    fs.mkdir(f"{root}/new")  # nothing to create: it appears with its first file
    fs.makedirs(f"{root}/new/deeper", exist_ok=False)
    assert not fs.exists(f"{root}/new")
    fs.makedirs(f"{root}/run", exist_ok=True)
    for make in (
        lambda: fs.mkdir(f"{root}/run"),
        lambda: fs.makedirs(f"{root}/run"),
        lambda: fs.makedirs(f"{root}/run/a.csv", exist_ok=True),
        lambda: fs.mkdir(f"{root}/run/a.csv"),
    ):
        with pytest.raises(FileExistsError):
            make()
    with pytest.raises(OSError, match="not empty"):
        fs.rmdir(f"{root}/run")
    with pytest.raises(NotADirectoryError):
        fs.rmdir(f"{root}/run/a.csv")
    fs.rmdir(f"{root}/new")  # never created, so nothing to remove
    assert fs.cat(f"{root}/run/a.csv") == b"a"


async def test_copy_move_and_directories_on_an_asynchronous_filesystem(
    server: LocalServer,
) -> None:
    fs = LabricFileSystem(
        server.admin_key, base_url=server.base_url, asynchronous=True, skip_instance_cache=True
    )
    async with fs:
        await fs._pipe_file("async/a.csv", b"x\n")
        await fs._pipe_file("async/a.csv", b"y\n")  # replaces
        await fs._copy("async/a.csv", "async/b.csv")
        await fs._mv("async/b.csv", "async/sub/c.csv")
        assert await fs._find("async") == ["async/a.csv", "async/sub/c.csv"]
        assert await fs._cat_file("async/sub/c.csv") == b"y\n"
        assert len([f async for f in (await fs._labric()).files.list(query="async/")]) == 2
        with pytest.raises(FileExistsError):
            await fs._makedirs("async/sub")
        with pytest.raises(OSError, match="not empty"):
            await fs._rmdir("async/sub")

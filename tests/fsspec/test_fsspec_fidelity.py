"""``labric://`` behaving as object-store filesystems do: fresh reads after other writers,
copy and move, overwrites that replace, and directory semantics."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from labric import Labric
from labric.fsspec import LabricFileSystem

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

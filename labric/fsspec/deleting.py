"""``rm``: the files each path names, then one concurrent bulk delete.

A path names every file at it (all its versions, so the path is gone afterwards); an ``.id/``
path names that one file. Directories are implied, so they vanish with the last file under
them; a directory given without ``recursive=True`` is refused.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from labric.fsspec import transfers
from labric.fsspec.namespace import LabricNamespace
from labric.fsspec.paths import fs_path, id_of, not_found

__all__ = ["remove"]


async def remove(
    fs: LabricNamespace,
    path: Any,
    *,
    recursive: bool,
    batch_size: int | None,
    maxdepth: int | None,
) -> None:
    """Delete the files ``path`` (a path, a glob, or a list of them) names: fsspec's ``rm``."""
    paths = await fs._expand_path(path, recursive=recursive, maxdepth=maxdepth)
    ids: list[str] = []
    by_path: dict[str, list[str]] = {}
    for p in paths:
        file_id = id_of(p)
        if file_id is not None:
            ids.append((await fs._by_id(p, file_id)).file_id)
        else:
            by_path[p] = []
    if by_path:
        # One listing of what the paths share serves all of them.
        # A string prefix, not a path one: the server matches substrings of paths.
        shared = os.path.commonprefix(list(by_path))  # noqa: RUF071
        for f in await fs._listing(shared):
            at = fs_path(f)
            if at in by_path:
                by_path[at].append(f.file_id)
    for p, found in by_path.items():
        if found:
            ids.extend(found)
        elif recursive:
            continue  # a directory of the expansion: it goes with its files
        elif await fs._isdir(p, refresh=True):
            raise IsADirectoryError(
                errno.EISDIR, "A directory: pass recursive=True to delete what it holds", p
            )
        else:
            raise not_found(p)
    try:
        await transfers.delete_files(await fs._labric(), ids, fs._width(batch_size))
    finally:
        for p in paths:
            fs.invalidate_cache(p)

"""Directory semantics: implied by ``/`` in paths, as in s3fs and gcsfs.

A directory exists exactly while a file lies under it, so none needs creating and none is ever
empty. ``mkdir``/``makedirs`` therefore only check: they refuse an existing path (a file
always, a directory unless ``exist_ok``) and create nothing, and ``rmdir`` refuses an existing
directory (it holds files) or a file, and does nothing for a missing path.
"""

from __future__ import annotations

import errno

from labric.fsspec.namespace import LabricNamespace

__all__ = ["check_makedirs", "check_rmdir"]


async def check_makedirs(fs: LabricNamespace, path: str, exist_ok: bool) -> None:
    """Refuse an existing path (a file always, a directory unless ``exist_ok``); else
    nothing to do, as directories are implied by the files under them."""
    path = fs._strip_protocol(path)
    if not path:
        if exist_ok:
            return
        raise FileExistsError(errno.EEXIST, "The root always exists", path)
    try:
        info = await fs._info(path, refresh=True)
    except FileNotFoundError:
        return
    if info["type"] == "file" or not exist_ok:
        raise FileExistsError(errno.EEXIST, f"A {info['type']} already exists here", path)


async def check_rmdir(fs: LabricNamespace, path: str) -> None:
    """Refuse to remove ``path``: an existing directory is never empty; a file is no directory.

    A missing path is nothing to do (it was never created, as mkdir makes nothing, or is gone).
    """
    path = fs._strip_protocol(path)
    try:
        info = await fs._info(path, refresh=True)
    except FileNotFoundError:
        return  # never created (mkdir makes nothing) or already gone: nothing to remove
    if info["type"] == "file":
        raise NotADirectoryError(errno.ENOTDIR, "A file, not a directory", path)
    # A directory exists only while a file lies under it, so it is never empty.
    raise OSError(errno.ENOTEMPTY, "Directory not empty: rm(path, recursive=True) deletes it", path)

"""Replace-on-write: after a write, the older files at the written paths are deleted.

Several platform files may share a path, and the newest wins (see :mod:`labric.fsspec`). A
write through the filesystem replaces what was at its path, as in an object store, so once the
new file is confirmed the files at that path listed after it (older) are deleted. Unless the
filesystem was made with ``keep_versions=True``, which keeps them, reachable by id.
"""

from __future__ import annotations

import os

from labric.fsspec import transfers
from labric.fsspec.namespace import LabricNamespace
from labric.fsspec.paths import fs_path

__all__ = ["replace_older"]


async def replace_older(fs: LabricNamespace, written: dict[str, str]) -> None:
    """Delete the files older than those just written at the same paths (path -> new id),
    unless ``fs`` keeps versions.

    Only files listed after the new one (newest first) go: a newer file another client
    wrote meanwhile stays, and a new file the listing does not show yet deletes nothing.
    """
    if fs.keep_versions or not written:
        return
    # A string prefix, not a path one: the server matches substrings of paths.
    shared = os.path.commonprefix(list(written))  # noqa: RUF071
    seen: set[str] = set()
    older: list[str] = []
    for f in await fs._listing(shared):
        at = fs_path(f)
        if at is None or at not in written:
            continue
        if f.file_id == written[at]:
            seen.add(at)
        elif at in seen:
            older.append(f.file_id)
    await transfers.delete_files(await fs._labric(), older, fs._width(None))

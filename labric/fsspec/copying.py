"""``cp``/``copy`` (and so ``mv``): copies made on the server, concurrently.

Each file is copied by ``files.copy``, which shares the stored bytes, so no content passes
through this machine where the server can copy (a server without the route gets a download and
upload, inside ``files.copy``). Paths are expanded and mapped exactly as fsspec's own ``copy``
does; the sources are resolved from one fresh listing. A copy onto an existing path replaces it
(:mod:`~labric.fsspec.versions`). Directories are implied, so copying one is nothing to do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fsspec.implementations.local import trailing_sep

from labric.errors import NotFoundError
from labric.fsspec import transfers
from labric.fsspec.namespace import LabricNamespace
from labric.fsspec.paths import not_found, writable
from labric.fsspec.versions import replace_older

__all__ = ["copy_entry", "copy_paths"]


async def copy_entry(
    fs: LabricNamespace, info: dict[str, Any], path2: str, job_execution_id: str | None
) -> None:
    """Copy one listed file to ``path2`` on the server (no bytes through this machine where
    the server can copy); directories are implied, so copying one is nothing to do."""
    if info["type"] != "file":
        return
    dest = writable(fs._strip_protocol(path2))
    client = await fs._labric()
    try:
        copied = await client.files.copy(
            info["file_id"], original_path=dest, job_execution_id=job_execution_id
        )
        await replace_older(fs, {dest: copied.file_id})
    except NotFoundError as exc:
        raise not_found(info["name"], exc) from exc
    finally:
        fs.invalidate_cache(dest)


async def copy_paths(
    fs: LabricNamespace,
    path1: Any,
    path2: Any,
    *,
    recursive: bool,
    on_error: str | None,
    maxdepth: int | None,
    batch_size: int | None,
    job_execution_id: str | None,
) -> None:
    """Copy files (and, with ``recursive=True``, trees) on the server: fsspec's ``copy``.

    ``on_error="ignore"`` (the default of a recursive copy) skips sources that vanished;
    every other failure is raised once all the copies have run.
    """
    if on_error is None:
        on_error = "ignore" if recursive else "raise"
    if isinstance(path1, list) and isinstance(path2, list):
        paths1 = [fs._strip_protocol(p) for p in path1]
        paths2 = [fs._strip_protocol(p) for p in path2]
        infos = await fs._infos(paths1, batch_size)
    else:
        source_is_str = isinstance(path1, str)
        paths1 = await fs._expand_path(path1, maxdepth=maxdepth, recursive=recursive)
        infos = await fs._infos(paths1, batch_size)
        if source_is_str and (not recursive or maxdepth is not None):
            # A non-recursive copy does not copy directories.
            kept = [
                (p, i)
                for p, i in zip(paths1, infos, strict=True)
                if not trailing_sep(p) and i["type"] == "file"
            ]
            paths1, infos = [p for p, _ in kept], [i for _, i in kept]
            if not paths1:
                return
        dest_is_dir = isinstance(path2, str) and (trailing_sep(path2) or await fs._isdir(path2))
        paths2 = transfers.copy_destinations(
            path1, paths1, fs._strip_protocol(path2), dest_is_dir=dest_is_dir
        )
    limit = asyncio.Semaphore(fs._width(batch_size))

    async def one(info: dict[str, Any], dest: str) -> None:
        async with limit:
            await copy_entry(fs, info, dest, job_execution_id)

    results = await asyncio.gather(
        *(one(i, p) for i, p in zip(infos, paths2, strict=True)), return_exceptions=True
    )
    errors = [
        r
        for r in results
        if isinstance(r, BaseException)
        and not (on_error == "ignore" and isinstance(r, FileNotFoundError))
    ]
    transfers.raise_first(errors, len(paths2))

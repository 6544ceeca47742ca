"""Writes: ``pipe``, ``put_file`` and bulk ``put``, each replacing what was at its path.

A single file goes up with ``files.upload``; a ``put`` of many with the engine's
``upload_many`` (concurrent, checksummed, resumable), all its files recorded under one job
execution unless ``instrument_id`` or ``job_execution_id`` says otherwise. Paths are expanded and
mapped to platform paths exactly as fsspec's own ``put`` does. Once a new file is confirmed, the
older ones at its path go (:mod:`~labric.fsspec.versions`), and the cached listings that showed
the path are dropped whatever the outcome. ``mode="create"`` refuses a path that holds a file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from fsspec.implementations.local import trailing_sep

from labric.fsspec import transfers
from labric.fsspec.namespace import LabricNamespace
from labric.fsspec.paths import writable
from labric.fsspec.versions import replace_older

__all__ = ["put", "upload", "write_one"]


async def write_one(
    fs: LabricNamespace, source: Any, path: str, *, mode: str, **options: Any
) -> None:
    """Upload ``source`` (bytes or a local path) to ``path``; ``options`` go to ``files.upload``.

    Raises:
        FileExistsError: ``mode="create"`` and a file is already at ``path``.
    """
    path = writable(fs._strip_protocol(path))
    if mode == "create" and await fs._exists(path, refresh=True):
        raise FileExistsError(errno.EEXIST, "A file already exists at this path", path)
    await upload(fs, source, path, **options)


async def upload(fs: LabricNamespace, source: Any, path: str, **options: Any) -> None:
    """Upload ``source`` to ``path`` (already checked), then replace the older files there."""
    client = await fs._labric()
    try:
        uploaded = await client.files.upload(source, name=path, **options)
        await replace_older(fs, {path: uploaded.file_id})
    finally:
        fs.invalidate_cache(path)


async def put(
    fs: LabricNamespace,
    lpath: Any,
    rpath: Any,
    *,
    recursive: bool,
    callback: Any,
    batch_size: int | None,
    maxdepth: int | None,
    mode: str,
    instrument_id: str | None,
    job_execution_id: str | None,
) -> None:
    """Upload local files (and, with ``recursive=True``, trees) concurrently: fsspec's ``put``.

    Raises:
        FileExistsError: ``mode="create"`` and a file is already at one of the paths.
        Exception: the first failed upload, once every other file has been tried.
    """
    if isinstance(lpath, list) and isinstance(rpath, list):
        lpaths, rpaths = list(lpath), [fs._strip_protocol(p) for p in rpath]
    else:
        lpath, lpaths = transfers.expand_local(lpath, recursive=recursive, maxdepth=maxdepth)
        if not lpaths and isinstance(lpath, str) and (not recursive or maxdepth is not None):
            return
        dest_is_dir = isinstance(rpath, str) and (trailing_sep(rpath) or await fs._isdir(rpath))
        rpaths = transfers.remote_paths(
            lpath, lpaths, fs._strip_protocol(rpath), dest_is_dir=dest_is_dir
        )
    pairs = [
        (lp, writable(fs._strip_protocol(rp)))
        for lp, rp in zip(lpaths, rpaths, strict=True)
        if not os.path.isdir(lp)
    ]
    if mode == "create":
        fs.invalidate_cache()
        taken = [rp for _, rp in pairs if await fs._exists(rp)]
        if taken:
            raise FileExistsError(errno.EEXIST, "A file already exists at this path", taken[0])
    callback.set_size(len(pairs))
    if not pairs:
        return
    client = await fs._labric()
    try:
        outcomes = await client.files.upload_many(
            [(rp, Path(lp)) for lp, rp in pairs],
            concurrency=batch_size or fs.batch_size,
            instrument_id=instrument_id,
            job_execution_id=job_execution_id,
            on_progress=lambda event: callback.absolute_update(event.files_done),
        )
        written = {
            rp: o.file.file_id
            for (_, rp), o in zip(pairs, outcomes, strict=True)
            if o.ok and o.file is not None
        }
        await replace_older(fs, written)
    finally:
        for _, rp in pairs:
            fs.invalidate_cache(rp)
    transfers.raise_first([o.error for o in outcomes if o.error is not None], len(pairs))

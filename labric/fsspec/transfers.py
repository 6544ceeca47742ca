"""Bulk ``get``, ``put`` and ``rm``: fsspec's path mapping, then the transfer engine.

Paths are expanded and mapped between local and platform names exactly as fsspec's own ``get``
and ``put`` do (``other_paths``, trailing-separator and glob rules); the files then move through
the engine's ``download_many`` / ``upload_many``: concurrent, checksummed, resumable.
``download_many`` writes, verifies and fsyncs each file in a staging directory next to the
destinations, from which it is renamed into place, so a local file is whole or untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from glob import has_magic
from typing import Any

from fsspec.implementations.local import LocalFileSystem, make_path_posix, trailing_sep
from fsspec.utils import other_paths

from labric._client import AsyncLabric
from labric.errors import NotFoundError, TransferError
from labric.fsspec.paths import not_found
from labric.models.transfers import TransferProgress

__all__ = [
    "bytes_to",
    "copy_destinations",
    "delete_files",
    "download_into_place",
    "download_targets",
    "expand_local",
    "local_paths",
    "raise_first",
    "remote_paths",
]

#: A file to download: its ``info`` entry and the local path it goes to.
Target = tuple[dict[str, Any], str]


# -- get ----------------------------------------------------------------------------------------


def local_paths(rpath: Any, rpaths: list[str], lpath: str, *, copy_dir: bool) -> list[str]:
    """The local destinations of ``rpaths`` (expanded from ``rpath``) under ``lpath``.

    ``copy_dir``: ``rpath`` is a string without a trailing separator, so a directory it names
    is copied as itself into an existing ``lpath`` (not just its contents), as with fsspec's
    ``get``.
    """
    source_is_str = isinstance(rpath, str)
    lpath = make_path_posix(lpath)
    dest_is_dir = trailing_sep(lpath) or os.path.isdir(lpath)
    exists = source_is_str and (
        (has_magic(rpath) and len(rpaths) == 1)
        or (not has_magic(rpath) and dest_is_dir and copy_dir)
    )
    lpaths: list[str] = other_paths(rpaths, lpath, exists=exists, flatten=not source_is_str)
    contained(lpath, lpaths)
    return lpaths


def contained(root: str, paths: list[str]) -> None:
    """Refuse local destinations that a platform name (``../x``) would put outside ``root``."""
    base = os.path.abspath(root)
    for path in paths:
        full = os.path.abspath(path)
        if full != base and not full.startswith(base.rstrip(os.sep) + os.sep):
            raise TransferError(f"Refusing to write {path!r}: it lies outside {root!r}")


def download_targets(infos: list[dict[str, Any]], lpaths: list[str]) -> list[Target]:
    """The files to download and where; creates the local directories of directory entries.

    Blocking (it touches the local disk): run it in a thread.
    """
    targets: list[Target] = []
    for info, local in zip(infos, lpaths, strict=True):
        if info["type"] == "directory":
            os.makedirs(local, exist_ok=True)
        elif os.path.isdir(local):
            # A file at the top level into an existing directory (fsspec maps a name with no
            # "/" onto the directory itself): it goes inside, as with cp.
            targets.append((info, os.path.join(local, info["name"].rsplit("/", 1)[-1])))
        else:
            targets.append((info, local))
    return targets


def _rounds(targets: list[Target]) -> list[list[Target]]:
    """Split targets so no round holds two files (or one file twice) at one platform path:
    ``download_many`` lays files out by their platform paths and refuses such duplicates."""
    rounds: list[list[Target]] = []
    for target in targets:
        key = target[0]["original_path"] or target[0]["file_id"]
        for batch in rounds:
            if all((t[0]["original_path"] or t[0]["file_id"]) != key for t in batch):
                batch.append(target)
                break
        else:
            rounds.append([target])
    return rounds


async def download_into_place(
    client: AsyncLabric, targets: list[Target], concurrency: int | None, callback: Any
) -> None:
    """Download ``targets`` through a staging directory and rename each into place.

    Raises:
        Exception: the first failure, once every other file has been tried (with a note
            counting the failures when there are several).
    """
    for _, local in targets:
        await asyncio.to_thread(os.makedirs, os.path.dirname(local) or ".", exist_ok=True)
    root = os.path.commonpath([os.path.dirname(os.path.abspath(lp)) for _, lp in targets])
    staging = await asyncio.to_thread(tempfile.mkdtemp, prefix=".labric-get-", dir=root)
    errors: list[BaseException] = []
    done = 0
    try:
        for batch in _rounds(targets):
            before = done

            def progress(event: TransferProgress, before: int = before) -> None:
                callback.absolute_update(before + event.files_done)

            outcomes = await client.files.download_many(
                [info["file_id"] for info, _ in batch],
                staging,
                concurrency=concurrency,
                overwrite=True,
                on_progress=progress,
            )
            done += len(batch)
            for (info, local), outcome in zip(batch, outcomes, strict=True):
                if outcome.ok and outcome.path is not None:
                    await asyncio.to_thread(_move_into_place, os.fspath(outcome.path), local)
                elif isinstance(outcome.error, NotFoundError):
                    errors.append(not_found(info["name"], outcome.error))
                elif outcome.error is not None:
                    errors.append(outcome.error)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    raise_first(errors, len(targets))


def _move_into_place(src: str, dest: str) -> None:
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(src, dest)  # another file system: copy, then remove


# -- put ----------------------------------------------------------------------------------------


def expand_local(lpath: Any, *, recursive: bool, maxdepth: int | None) -> tuple[Any, list[str]]:
    """``lpath`` (made posix when a string) and the local files it expands to.

    A non-recursive copy (or one limited in depth) leaves directories out.
    """
    source_is_str = isinstance(lpath, str)
    if source_is_str:
        lpath = make_path_posix(lpath)
    local = LocalFileSystem()
    lpaths: list[str] = local.expand_path(lpath, recursive=recursive, maxdepth=maxdepth)
    if source_is_str and (not recursive or maxdepth is not None):
        lpaths = [p for p in lpaths if not (trailing_sep(p) or local.isdir(p))]
    return lpath, lpaths


def remote_paths(lpath: Any, lpaths: list[str], rpath: str, *, dest_is_dir: bool) -> list[str]:
    """The platform paths of ``lpaths`` (expanded from ``lpath``) under ``rpath``."""
    source_is_str = isinstance(lpath, str)
    exists = source_is_str and (
        (has_magic(lpath) and len(lpaths) == 1)
        or (not has_magic(lpath) and dest_is_dir and not trailing_sep(lpath))
    )
    rpaths: list[str] = other_paths(lpaths, rpath, exists=exists, flatten=not source_is_str)
    return rpaths


# -- copy ---------------------------------------------------------------------------------------


def copy_destinations(path1: Any, paths1: list[str], path2: str, *, dest_is_dir: bool) -> list[str]:
    """The platform paths ``paths1`` (expanded from ``path1``) are copied to under ``path2``,
    mapped as fsspec's own ``copy`` maps them."""
    source_is_str = isinstance(path1, str)
    exists = source_is_str and (
        (has_magic(path1) and len(paths1) == 1)
        or (not has_magic(path1) and dest_is_dir and not trailing_sep(path1))
    )
    dests: list[str] = other_paths(paths1, path2, exists=exists, flatten=not source_is_str)
    return dests


# -- rm and errors ------------------------------------------------------------------------------


async def delete_files(client: AsyncLabric, file_ids: list[str], width: int) -> None:
    """Delete files by id, ``width`` at a time; one already gone counts as deleted."""
    limit = asyncio.Semaphore(width)

    async def delete(file_id: str) -> None:
        async with limit:
            with contextlib.suppress(NotFoundError):  # already gone is what was asked
                await client.files.delete(file_id)

    await asyncio.gather(*(delete(i) for i in dict.fromkeys(file_ids)))


def bytes_to(callback: Any) -> Callable[[TransferProgress], None]:
    """An ``on_progress`` that reports one file's bytes to an fsspec callback."""

    def report(event: TransferProgress) -> None:
        if event.bytes_total is not None:
            callback.set_size(event.bytes_total)
        callback.absolute_update(event.bytes_done)

    return report


def raise_first(errors: list[BaseException], total: int) -> None:
    """Raise the first of ``errors``, noting how many of ``total`` files failed."""
    if not errors:
        return
    first = errors[0]
    if len(errors) > 1:
        first.add_note(f"{len(errors)} of {total} files failed; this is the first.")
    raise first

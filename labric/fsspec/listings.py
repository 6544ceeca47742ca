"""The listings cache: complete directory listings kept in fsspec's ``dircache``.

A listing of ``GET /v1/files`` narrowed to a path holds every file under it, so one listing
answers every ``ls`` and ``info`` below that path until something changes it. Entries are
cached per directory, keyed by its path (``""`` is the root); a write or delete at a path
drops the listings at, under and above it, since each of those listings shows (or implies) the
file. Nothing here talks to the server: the filesystem lists, these functions file the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from labric.fsspec.paths import dir_entry, entries, tree
from labric.models.files import FileInfo

__all__ = ["cache_tree", "cached_entry", "forget"]

#: fsspec's ``dircache``: directory path -> its entries.
DirCache = MutableMapping[str, list[dict[str, Any]]]


def forget(dircache: DirCache, path: str, parent: Callable[[str], str]) -> None:
    """Drop the cached listings at, under and above ``path``.

    The parents go too: a file written or deleted at ``path`` changes their listings.
    """
    below = f"{path}/" if path else ""
    for cached in [key for key in dircache if key.startswith(below)]:
        dircache.pop(cached, None)
    while True:
        dircache.pop(path, None)
        if not path:
            break
        path = parent(path)


def cached_entry(dircache: DirCache, path: str, parent: str) -> dict[str, Any] | None:
    """The entry of ``path`` from its ``parent``'s cached listing, if that is cached."""
    try:
        listing = dircache[parent]
    except KeyError:
        return None
    found = [e for e in listing if e["name"] == path]
    # A file shadows a directory of the same name, as the filesystem's info does.
    for entry in sorted(found, key=lambda e: e["type"] != "file"):
        return dict(entry)
    return None


def cache_tree(
    dircache: DirCache,
    files: Iterable[FileInfo],
    path: str,
    *,
    prefix: str = "",
    maxdepth: int | None = None,
    withdirs: bool = False,
) -> dict[str, dict[str, Any]]:
    """What ``find(path)`` returns, from one listing of everything under ``path``.

    Every directory of the listing is cached on the way: later ``ls`` and ``info`` calls (glob's
    matches, an engine's per-file lookups) are answered from it. ``prefix`` (from ``glob``)
    narrows to names under ``path`` starting with it.
    """
    base = f"{path}/" if path else ""
    out: dict[str, dict[str, Any]] = {}
    for directory, children in tree(path, files).items():
        listed = entries(children)
        if not (prefix and directory == path):
            # The listing is not limited in depth, so it holds every file of each directory
            # under ``path`` (of ``path`` itself only without a prefix).
            dircache[directory] = listed
        # How far below ``path`` the directory is; its children are one further down.
        depth = 0 if directory == path else directory[len(base) :].count("/") + 1
        if maxdepth is not None and depth >= maxdepth:
            continue
        for entry in listed:
            if entry["type"] == "file":
                out[entry["name"]] = dict(entry)  # a file shadows a directory of that name
            elif withdirs:
                out.setdefault(entry["name"], dict(entry))
    if withdirs and path and out:
        out.setdefault(path, dir_entry(path))
    return out

"""``labric://`` paths and the platform files they name.

A file's path is its platform ``original_path`` with a leading ``/`` dropped; directories are not
stored anywhere but implied by the ``/`` in those paths, as in object stores. ``.id/<file_id>``
names one file by id, whatever its path. Everything here is pure: it maps listings (newest file
first) to fsspec's entries and directory trees, and never talks to the server.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from typing import Any

from labric.models.files import FileInfo

__all__ = [
    "ID_DIR",
    "byte_range",
    "dir_entry",
    "entries",
    "file_entry",
    "fs_path",
    "id_of",
    "not_found",
    "tree",
    "writable",
]

#: The virtual directory of files addressed by id: ``labric://.id/<file_id>``.
ID_DIR = ".id"


def fs_path(f: FileInfo) -> str | None:
    """The path a file is listed under, or ``None`` when it has none (reachable by id only)."""
    path = (f.original_path or "").lstrip("/")
    if not path or path == ID_DIR or path.startswith(ID_DIR + "/"):
        return None
    return path


def id_of(path: str) -> str | None:
    """The file id of an ``.id/<file_id>`` path, else ``None``."""
    if not path.startswith(ID_DIR + "/"):
        return None
    file_id = path[len(ID_DIR) + 1 :]
    if not file_id or "/" in file_id:
        raise FileNotFoundError(errno.ENOENT, "Not a file id path (.id/<file_id>)", path)
    return file_id


def writable(path: str) -> str:
    """Check a path a new file can be given; return it."""
    if not path:
        raise ValueError("A file needs a path, not the root: put(lpath, 'run42/plate1.csv')")
    if path == ID_DIR or path.startswith(ID_DIR + "/"):
        raise ValueError(f"{ID_DIR}/ addresses existing files by id; write to a path instead")
    return path


def file_entry(path: str, f: FileInfo) -> dict[str, Any]:
    """fsspec's ``info`` of the file ``f`` seen at ``path``."""
    return {
        "name": path,
        "type": "file",
        "size": f.size_bytes,
        "file_id": f.file_id,
        "original_path": f.original_path,
        "crc32c": f.crc32c_hash,
        "created": f.file_created_at,
        "content_type": f.content_type,
        "instrument_id": f.source_instrument_id,
        "job_execution_id": f.job_execution_id,
    }


def dir_entry(path: str) -> dict[str, Any]:
    """fsspec's ``info`` of an implied directory."""
    return {"name": path, "type": "directory", "size": 0}


def tree(base: str, files: Iterable[FileInfo]) -> dict[str, dict[tuple[str, str], Any]]:
    """The children of every directory at or below ``base`` (``""`` is the root).

    ``files`` come newest first, so the first file seen at a path is the one it resolves to.
    Keys are ``(name, type)``: a path can be both a file and a directory, as in object stores.
    """
    prefix = base + "/" if base else ""
    out: dict[str, dict[tuple[str, str], Any]] = {}
    for f in files:
        path = fs_path(f)
        if path is None or not path.startswith(prefix) or path == prefix:
            continue
        parts = path[len(prefix) :].split("/")
        parent = base
        for depth, part in enumerate(parts):
            name = f"{parent}/{part}" if parent else part
            children = out.setdefault(parent, {})
            if depth == len(parts) - 1:
                children.setdefault((name, "file"), f)
            else:
                children.setdefault((name, "directory"), None)
            parent = name
    return out


def entries(children: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """The entries of one directory of a :func:`tree`, sorted as ``ls`` returns them."""
    out = [
        file_entry(name, f) if kind == "file" else dir_entry(name)
        for (name, kind), f in children.items()
    ]
    return sorted(out, key=lambda e: (e["name"], e["type"]))


def byte_range(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """``[start, end)`` as Python slices mean it (negative from the end), clamped to the file."""
    begin = 0 if start is None else (start + size if start < 0 else start)
    stop = size if end is None else (end + size if end < 0 else end)
    return max(0, min(begin, size)), max(0, min(stop, size))


def not_found(path: str, exc: BaseException | None = None) -> FileNotFoundError:
    """The ``FileNotFoundError`` fsspec callers expect, chained to the platform's error."""
    error = FileNotFoundError(errno.ENOENT, "No such file on Labric", path)
    if exc is not None:
        error.__cause__ = exc
    return error

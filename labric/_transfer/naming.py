"""Naming: where a downloaded file goes, and the name it is written under until it is verified.

A server-supplied name is untrusted and only used through :func:`safe_relative_path`, which
refuses what could escape or deceive (``..``, NUL, control characters, bidi overrides, a component
too long for a file system) and sanitises deterministically what is merely unusual: separators of
either kind split components; a root, a drive (``C:``) or a UNC prefix, empty and ``.``
components are dropped. A refusal is an :class:`~labric.errors.UnsafeNameError` naming the file id
and showing the name escaped. :func:`destination_path` maps a file to its final path: under its
platform path for bulk downloads, where every final path is claimed before a byte is written so
two files that map to one path never write over each other; under its file name when the
destination is a directory.

Directories under the destination are opened one component at a time without following symlinks
(:func:`open_parent`), so a symlink already inside the destination never leads a download out of
it, and bytes go to a temporary file created exclusively under a random name in the final
directory (:func:`create_temporary`, ``.<name>.<random>.labric-part``): it never touches an
existing file, and the final rename stays within one directory, so it is atomic. The resume
journal records that name; nothing finds a temporary file by guessing it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import unicodedata
from pathlib import Path

from labric.errors import TransferError, UnsafeNameError

__all__ = [
    "TEMP_SUFFIX",
    "destination_path",
    "open_parent",
    "safe_relative_path",
    "temporary_name",
]

#: The suffix of the temporary files downloads are written under until verified.
TEMP_SUFFIX = ".labric-part"

#: The longest path component, in bytes, that common file systems take (ext4, APFS, NTFS).
_MAX_COMPONENT = 255

#: Characters that reorder how a name is displayed, so ``evil\u202etxt.exe`` shows as
#: ``evilexe.txt``: the bidi embeddings, overrides and isolates, and the invisible marks.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _refuse(file_id: str | None, name: str, why: str) -> UnsafeNameError:
    shown = ascii(name) if len(name) <= 120 else ascii(name[:120]) + "..."
    subject = f"file {file_id}'s name" if file_id else "a file name"
    return UnsafeNameError(f"Refusing {subject} {shown}: {why}", file_id=file_id, name=name)


def safe_relative_path(name: str, *, file_id: str | None = None) -> Path:
    """Turn a server-supplied file name into a relative path that stays inside its directory.

    Separators of either kind split components; empty and ``.`` components and a root, drive or
    UNC prefix are dropped (``C:\\data\\x.csv`` is ``data/x.csv``).

    Raises:
        UnsafeNameError: the name has a ``..`` component, a NUL or other control character, a
            bidi override, a component too long for a file system, or nothing usable.
    """
    if "\x00" in name:
        raise _refuse(file_id, name, "it contains a NUL character")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise _refuse(file_id, name, "it contains a control character")
    if any(c in _BIDI for c in name):
        raise _refuse(file_id, name, "it contains a bidi control that disguises it")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive, "C:"
        parts = parts[1:]
    elif parts and parts[0][1:] == ":..":  # "C:..", the parent of a drive's current folder
        raise _refuse(file_id, name, "it leaves its directory")
    if any(p == ".." for p in parts):
        raise _refuse(file_id, name, "it leaves its directory")
    if not parts:
        raise _refuse(file_id, name, "it is empty")
    if any(len(p.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT for p in parts):
        # Caught here, the file fails with a reason; the OS would only say ENAMETOOLONG.
        raise _refuse(file_id, name, f"a part of it is over {_MAX_COMPONENT} bytes")
    return Path(*parts)


def destination_path(
    dest: Path,
    *,
    file_id: str,
    file_name: str | None,
    original_path: str | None,
    claimed: set[Path] | None,
) -> tuple[Path, Path, tuple[str, ...]]:
    """The final path of one download to ``dest`` (a file path, or a directory to put it in).

    With ``claimed`` (bulk downloads), ``dest`` is a directory and the file keeps its platform
    path under it; the path is claimed in that set here, before any byte is written.

    Returns:
        The final path, the trusted directory it is under (given by the caller, so symlinks in it
        are followed) and the components below that directory (server-supplied, opened without
        following symlinks by :func:`open_parent`).

    Raises:
        UnsafeNameError: an unsafe name.
        TransferError: another file of the same bulk download claimed the path.
    """
    if claimed is not None:
        rel = safe_relative_path(original_path or file_name or file_id, file_id=file_id)
        final = dest / rel
        if final in claimed:
            raise TransferError(f"Another file in this download also maps to {final}")
        claimed.add(final)
        return final, dest, rel.parts
    if dest.is_dir():
        name = safe_relative_path(file_name or file_id, file_id=file_id).name
        return dest / name, dest, (name,)
    return dest, dest.parent, (dest.name,)


def open_parent(root: Path, parts: tuple[str, ...], *, file_id: str) -> int:
    """Open (creating as needed) the directory holding ``root / parts``; return its fd.

    ``root`` is opened normally (the caller chose it); every component below it is opened with
    ``O_NOFOLLOW``, so a symlink there is refused rather than followed out of ``root``.

    Raises:
        UnsafeNameError: a component below ``root`` is a symlink or not a directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(root, flags)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    shown = "/".join(parts)
                    raise UnsafeNameError(
                        f"Refusing to write file {file_id} to {shown!a} under {root}: "
                        f"{part!a} is a symlink or not a directory, and is not followed",
                        file_id=file_id,
                        name=shown,
                    ) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def temporary_name(final_name: str) -> str:
    """A fresh, hidden, recognisable name next to ``final_name``: ``.<name>.<random>.labric-part``.

    Long names are shortened so the temporary name still fits in one path component.
    """
    stem = final_name
    room = _MAX_COMPONENT - len(TEMP_SUFFIX) - 2 - 16
    while len(stem.encode("utf-8", "surrogatepass")) > room:
        stem = stem[:-1]
    return f".{stem}.{secrets.token_hex(8)}{TEMP_SUFFIX}"

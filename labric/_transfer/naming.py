"""Naming: where a downloaded file goes, and the name it is written under until it is verified.

A server-supplied name is only used through :func:`safe_relative_path`, which keeps it inside
the destination directory (no ``..``, no root or drive, no NUL, no component too long for a file
system). :func:`destination_path` maps a file to its final path: under its platform path for bulk
downloads, where every final path is claimed before a byte is written so two files that map to
one path never write over each other; under its file name when the destination is a directory.
Bytes are written to :func:`temporary_path` (``<final>.part``) and renamed to the final name
only once verified, so a partial file never appears under the final name.
"""

from __future__ import annotations

from pathlib import Path

from labric.errors import TransferError

__all__ = ["PART_SUFFIX", "destination_path", "safe_relative_path", "temporary_path"]

#: The suffix a download is written under until it is verified and renamed into place.
PART_SUFFIX = ".part"

#: The longest path component, in bytes, that common file systems take (ext4, APFS, NTFS), less
#: the ``.part`` suffix a download is written under first.
_MAX_COMPONENT = 255 - len(PART_SUFFIX)


def safe_relative_path(name: str) -> Path:
    """Turn a server-supplied file name into a relative path that stays inside its directory.

    Separators of either kind split components; empty and ``.`` components are dropped, a drive or
    root prefix is ignored.

    Raises:
        TransferError: the name has a ``..`` component, a NUL, a component too long for a file
            system, or nothing usable.
    """
    if "\x00" in name:
        raise TransferError(f"Refusing a file name with a NUL character: {name!r}")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive, "C:"
        parts = parts[1:]
    if any(p == ".." for p in parts):
        raise TransferError(f"Refusing a file name that leaves its directory: {name!r}")
    if not parts:
        raise TransferError(f"Refusing an empty file name: {name!r}")
    if any(len(p.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT for p in parts):
        # Caught here, the file fails with a reason; the OS would only say ENAMETOOLONG.
        raise TransferError(
            f"Refusing a file name with a part over {_MAX_COMPONENT} bytes: {name[:60]!r}..."
        )
    return Path(*parts)


def destination_path(
    dest: Path,
    *,
    file_id: str,
    file_name: str | None,
    original_path: str | None,
    claimed: set[Path] | None,
) -> Path:
    """The final path of one download to ``dest`` (a file path, or a directory to put it in).

    With ``claimed`` (bulk downloads), ``dest`` is a directory and the file keeps its platform
    path under it; the path is claimed in that set here, before any byte is written.

    Raises:
        TransferError: an unsafe name, or another file of the same bulk download claimed the path.
    """
    final = dest
    if claimed is not None:
        final = dest / safe_relative_path(original_path or file_name or file_id)
        if final in claimed:
            raise TransferError(f"Another file in this download also maps to {final}")
        claimed.add(final)
    elif dest.is_dir():
        final = dest / safe_relative_path(file_name or file_id).name
    return final


def temporary_path(final: Path) -> Path:
    """Where a download to ``final`` is written until it is verified and renamed into place."""
    return final.with_name(final.name + PART_SUFFIX)

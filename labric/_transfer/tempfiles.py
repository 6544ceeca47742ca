"""Temporary files of downloads: created exclusively, locked, claimed for resume, then moved.

A download writes to a temporary file created exclusively (``O_EXCL | O_NOFOLLOW``) under a
random name next to its final path (see :mod:`labric._transfer.naming`). The journal records the
name before the file exists, so a crash never leaves a temporary file nothing knows about, and a
rerun finds it again by that name, never by guessing. While a download writes the file it holds
an exclusive ``flock`` on it: a second download of the same file to the same path finds it busy
and uses a fresh temporary file of its own instead of writing into another's. A journalled file
that cannot resume (another size, part size, or no pinned ETag) is removed, and only when its name
still holds the very file that was opened (same device and inode): a name that was replaced by
something else is not this SDK's to touch.

The move to the final name (:func:`_finalize`) happens only after the bytes were verified and
fsynced, so a partial file never appears under the final name and no existing file is written to.
Without ``overwrite`` the move must fail when the name exists: ``renameat2(RENAME_NOREPLACE)``
where the system has it (atomic, no second name ever visible), else a hard link and an unlink,
else (file systems without hard links) a check and a rename, which leaves a narrow race.

Threading: the functions that touch the disk at length (``_finalize``, ``_crc_at``) run in a
worker thread through :func:`_to_thread_to_end`, which waits for the thread to end even when the
caller is cancelled, because the caller closes the descriptors the thread uses when it unwinds.
Closing and removing a temporary file (:func:`release_temporary`) is done on the loop without
suspending, so it completes even while a download is being cancelled.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from labric._transfer.checksum import crc32c_extend
from labric._transfer.context import TransferContext
from labric._transfer.naming import TEMP_SUFFIX, temporary_name
from labric.models.files import FileContent

__all__ = ["forget_temporary", "open_temporary", "release_temporary"]

T = TypeVar("T")

_RENAME_NOREPLACE = 1
_renameat2: Any = None
if sys.platform == "linux":
    _renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if _renameat2 is not None:
        _renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        _renameat2.restype = ctypes.c_int

_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}
)


@attrs.define
class _Temp:
    """A temporary file this download created (or resumed) in the final directory."""

    dir_fd: int
    name: str
    fd: int
    key: str
    journalled: bool
    entry: dict[str, Any]


async def forget_temporary(ctx: TransferContext, key: str, dir_fd: int) -> None:
    """Remove a journalled temporary file no one holds, and its journal entry."""
    entry = await ctx.journal.get("download", key)
    if entry is None:
        return
    old = entry.get("temp")
    if isinstance(old, str) and _is_temp_name(old):
        found = _claim_temp(dir_fd, old)
        if found is _BUSY:
            return
        if isinstance(found, int):
            _drop_temp(dir_fd, old, found)
    await ctx.journal.delete("download", key)


async def open_temporary(
    ctx: TransferContext, info: FileContent, key: str, dir_fd: int, name: str, ranged: bool
) -> _Temp:
    """The temporary file to write: the journalled one when it can resume, else a new one.

    A journalled temporary file that cannot resume is removed (it is this SDK's: its random
    name was recorded before it was created). One that another download holds locked is left
    alone, and this download uses a new one it does not journal.
    """
    entry = await ctx.journal.get("download", key)
    journalled = True
    if entry is not None:
        old = entry.get("temp")
        if isinstance(old, str) and _is_temp_name(old):
            found = _claim_temp(dir_fd, old)
            if found is _BUSY:
                journalled = False
            elif isinstance(found, int):
                if (
                    ranged
                    and entry.get("size") == info.size_bytes
                    and entry.get("part_size") == ctx.config.part_size
                    and entry.get("etag")
                ):
                    return _Temp(dir_fd, old, found, key, True, entry)
                _drop_temp(dir_fd, old, found)
    while True:
        temp_name = temporary_name(name)
        fresh: dict[str, Any] = {
            "file_id": info.file_id,
            "temp": temp_name,
            "size": info.size_bytes,
            "part_size": ctx.config.part_size,
            "etag": None,
            "ranges": {},
        }
        if journalled:
            # Recorded (and on disk) before the file exists: a crash never leaves a
            # temporary file nothing knows about.
            await ctx.journal.put("download", key, fresh)
            await ctx.journal.flush()
        try:
            fd = _create_temp(dir_fd, temp_name)
        except FileExistsError:
            continue
        return _Temp(dir_fd, temp_name, fd, key, journalled, fresh)


async def release_temporary(ctx: TransferContext, temp: _Temp, *, keep: bool) -> None:
    """Close the temporary file; unless kept for resuming, remove it and its journal entry.

    Done on the loop (two system calls) and without suspending, so it completes even when
    the download is being cancelled, before the directory descriptor is closed.
    """
    _close_temp(temp, keep)
    if not keep and temp.journalled:
        await ctx.journal.delete("download", temp.key)


async def _to_thread_to_end(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a worker thread and wait for it to end, even when cancelled meanwhile.

    The thread uses descriptors that the caller closes when it unwinds: returning early on a
    cancellation would close them under it. The cancellation is raised once the thread ended.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# -- temporary files (worker thread) ----------------------------------------------------------

_BUSY = object()  # another download holds the temporary file


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and "/" not in name


if sys.platform != "win32":
    import fcntl

    def _lock(fd: int) -> bool:
        """Lock a temporary file while a download writes it; False when another holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

else:  # pragma: no cover - no flock on Windows

    def _lock(fd: int) -> bool:
        return True


def _create_temp(dir_fd: int, name: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    _lock(fd)
    return fd


def _claim_temp(dir_fd: int, name: str) -> int | object | None:
    """Open and lock a journalled temporary file: its fd, ``_BUSY``, or None when gone."""
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError:
        return None  # gone, or replaced by something that is not a file: not ours to touch
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    if not _lock(fd):
        os.close(fd)
        return _BUSY
    return fd


def _drop_temp(dir_fd: int, name: str, fd: int) -> None:
    """Remove a temporary file this SDK created, if the name still holds the open file."""
    try:
        here = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        mine = os.fstat(fd)
        if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _close_temp(temp: _Temp, keep: bool) -> None:
    if temp.fd < 0:
        return
    fd, temp.fd = temp.fd, -1
    if keep:
        os.close(fd)
    else:
        _drop_temp(temp.dir_fd, temp.name, fd)


def _lexists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _crc_at(dir_fd: int, name: str) -> int | None:
    """The CRC32C of the regular file ``name`` (never through a symlink), or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        crc = 0
        while block := os.read(fd, 4 * 1024 * 1024):
            crc = crc32c_extend(crc, block)
        return crc
    finally:
        os.close(fd)


def _rename_noreplace(dir_fd: int, src: str, dst: str) -> bool:
    """``renameat2(RENAME_NOREPLACE)``: True when done, False where the system lacks it.

    Raises:
        FileExistsError: ``dst`` exists.
    """
    if _renameat2 is None:
        return False
    if _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), dst)
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False  # a kernel or file system without it
    raise OSError(err, os.strerror(err), dst)


def _finalize(temp: _Temp, final: Path, name: str, overwrite: bool) -> None:
    """Sync the temporary file and give it its final name (never replacing one unless told).

    Without ``overwrite`` the move must fail when the name exists (a file that appeared during
    the download, a symlink): ``renameat2(RENAME_NOREPLACE)`` where the system has it (atomic, no
    second name ever visible), else a hard link and an unlink, else (file systems without hard
    links) a check and a rename, which leaves a narrow race.
    """
    os.fsync(temp.fd)
    dir_fd = temp.dir_fd
    exists = f"{final} appeared during the download; pass overwrite=True to replace it"
    if overwrite:
        os.rename(temp.name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    else:
        try:
            if not _rename_noreplace(dir_fd, temp.name, name):
                _link_then_unlink(dir_fd, temp.name, name)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, exists, str(final)) from None
    fd, temp.fd = temp.fd, -1
    os.close(fd)
    os.fsync(dir_fd)


def _link_then_unlink(dir_fd: int, src: str, dst: str) -> None:
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if _lexists(dir_fd, dst):
            raise FileExistsError(errno.EEXIST, "exists", dst) from None
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    else:
        os.unlink(src, dir_fd=dir_fd)

"""Disk primitives the blob directory is built from: vectored and positioned writes, syncing
files and directories, preallocation, range copies, and CRC32C in its wire form.

See :mod:`labric.server.core.blobs` for the layout and crash semantics they serve.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import google_crc32c

__all__ = [
    "O_CLOEXEC",
    "READ_CHUNK",
    "SYNC_EVERY",
    "Checksum",
    "Chunks",
    "as_list",
    "call_soon",
    "close_opened",
    "copy_range",
    "crc32c_b64",
    "datasync",
    "decode_crc32c",
    "fsync_dir",
    "native_executable_kind",
    "preallocate",
    "write_all",
]

T = TypeVar("T")

#: Bytes read from disk per step when copying or serving without sendfile.
READ_CHUNK = 4 * 1024 * 1024
#: A single PUT starts syncing what it wrote so far each time this many more bytes arrived.
SYNC_EVERY = 32 * 1024 * 1024
#: The most buffers one vectored write takes (Linux and macOS accept 1024).
IOV_MAX = 1024
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: ``fdatasync`` where the platform has it (not macOS), else ``fsync``.
datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)

# google_crc32c ships without type hints; this is its C implementation's streaming checksum.
Checksum: Any = google_crc32c.Checksum

Chunks = bytes | Sequence[bytes]


def crc32c_b64(digest: bytes) -> str:
    """The GCS wire form of a CRC32C: base64 of its 4 big-endian bytes."""
    return base64.b64encode(digest).decode("ascii")


def decode_crc32c(text: str) -> bytes | None:
    """The 4 bytes of a base64 CRC32C, or ``None`` when ``text`` is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        return None
    return raw if len(raw) == 4 else None


def native_executable_kind(
    head: bytes, tail_at: int | None = None, tail: bytes = b""
) -> str | None:
    """Name the native executable format ``head`` starts with (ELF, PE, Mach-O), else ``None``.

    Args:
        head: The first bytes of the file (at least 64 for PE detection).
        tail_at: For PE files whose header lies beyond ``head``: the offset ``tail`` was read from.
        tail: The 4 bytes at ``tail_at``.
    """
    if head.startswith(b"\x7fELF"):
        return "ELF"
    if head[:4] in (
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
    ):
        return "Mach-O"
    if head[:4] == b"\xca\xfe\xba\xbe" and len(head) >= 8:
        # Shared with Java class files; a universal binary has a small architecture count where
        # a class file has its version (45 or more).
        (count,) = struct.unpack(">I", head[4:8])
        if 0 < count < 45:
            return "Mach-O"
    if head.startswith(b"MZ") and len(head) >= 64:
        (pe_offset,) = struct.unpack("<I", head[0x3C:0x40])
        if pe_offset + 4 <= len(head):
            if head[pe_offset : pe_offset + 4] == b"PE\0\0":
                return "PE"
        elif tail_at == pe_offset and tail == b"PE\0\0":
            return "PE"
    return None


def close_opened(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def as_list(data: Chunks) -> list[bytes]:
    if isinstance(data, bytes):
        return [data] if data else []
    return [chunk for chunk in data if chunk]


def write_all(fd: int, buffers: Sequence[bytes], offset: int | None) -> None:
    """Write every byte of ``buffers`` (at ``offset``, or at the file position when ``None``)."""
    views = [memoryview(b) for b in buffers]
    first = 0
    while first < len(views):
        batch = views[first : first + IOV_MAX]
        if offset is None:
            written = os.writev(fd, batch)
        else:
            written = os.pwritev(fd, batch, offset)
            offset += written
        if written <= 0:
            raise OSError(errno.EIO, "a write made no progress")
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]


def preallocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes, allocated up front where the file system can (so a full disk
    fails the first part, not a later one), else as a sparse file."""
    try:
        os.posix_fallocate(fd, 0, size)
    except AttributeError:
        os.ftruncate(fd, size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)


def copy_range(src: Path, fd: int, offset: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``src`` to ``offset`` of ``fd``, then ``fdatasync``."""
    with open(src, "rb", buffering=0) as f:
        done = 0
        while done < size:
            step = min(READ_CHUNK, size - done)
            try:
                moved = os.copy_file_range(f.fileno(), fd, step, done, offset + done)
            except (AttributeError, OSError):
                chunk = os.pread(f.fileno(), step, done)
                if chunk:
                    write_all(fd, [chunk], offset + done)
                moved = len(chunk)
            if moved <= 0:
                raise OSError(f"{src.name} holds {done} bytes, expected {size}")
            done += moved
    datasync(fd)


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` from any thread (dropped once the loop is closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)

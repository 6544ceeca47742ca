"""Upload sources: a path, bytes, a binary file object or an async iterable of bytes, made readable.

:func:`open_source` measures a source once and returns a :class:`_Source` that reads any range
of it, so parts are read concurrently and a retried request re-reads its bytes instead of keeping
them. Paths are read with ``os.pread`` off the event loop. A small file is read whole in the same
worker-thread trip that measures it (for thousands of small files the hops, not the bytes, are
the cost). A larger one keeps the descriptor it was measured through, and its parts are
checksummed and streamed from it (:meth:`_Source.range_crc`, :meth:`_Source.stream`) rather than
buffered, by the client's one file-reading thread
(:meth:`~labric._transfer.context.TransferContext.reader`).

A path's identity (resolved path, size, mtime) keys its resume journal; its stamp (size, mtime,
ctime, inode) is checked again before an upload is confirmed (:meth:`_Source.check_unchanged`),
so a file rewritten while it was being sent fails instead of being confirmed as a mix of two
versions (ctime moves on every write and on ``os.utime``, so a rewrite that restores the old
mtime, as ``cp -p`` does, is seen too). Bytes are sliced without a copy; a seekable file object
is read from where it stood; a non-seekable stream or an async iterable is spooled to a
temporary file, never to memory.

:func:`_file_crc` reads a local file's CRC32C (to skip a file that is already there).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import mimetypes
import os
import stat
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import IO, Any, TypeVar

import attrs

from labric._transfer.checksum import crc32c_extend
from labric.errors import TransferError

__all__ = ["SMALL_FILE", "UploadSourceType", "guess_content_type", "open_source"]

T = TypeVar("T")

#: What ``upload`` accepts: a path, bytes, a binary file object, or an async iterable of bytes.
UploadSourceType = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | AsyncIterable[bytes]
)


@attrs.define
class _Source:
    """One upload source, measured, readable by range and restartable for retries."""

    name: str
    size: int
    content_type: str
    path: Path | None = None
    data: bytes | memoryview | None = None
    fileobj: IO[bytes] | None = None
    base_offset: int = 0
    identity: tuple[str, int, int] | None = None
    stamp: tuple[int, int, int, int] | None = None
    spooled: bool = False
    #: The descriptor ``path`` was measured through, kept open for a file too big to read when
    #: measured: every later read is an ``os.pread`` on it (no open per read), and a file
    #: renamed over the path meanwhile is still read as the one measured.
    fd: int | None = None
    #: The executor that reads ``fd`` (``None``: the loop's default one).
    reader: Executor | None = None

    async def _in_reader(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.reader, fn, *args)

    @property
    def streams(self) -> bool:
        """Whether parts are checksummed and sent from the file instead of from a buffer."""
        return self.fd is not None

    async def range_crc(self, offset: int, length: int, chunk: int) -> int:
        """The CRC32C of ``length`` bytes at ``offset`` of the file, in one worker-thread hop.

        The bytes are read ``chunk`` at a time and dropped: only the checksum is kept.
        """
        assert self.fd is not None
        return await self._in_reader(_crc_fd, self.fd, offset, length, chunk)

    async def stream(
        self, offset: int, length: int, chunk: int, touch: Callable[[], None]
    ) -> AsyncIterator[bytes]:
        """``length`` bytes at ``offset`` of the file, ``chunk`` at a time, for a request body.

        At most one chunk is read ahead of the socket, so a part in flight holds a chunk, not
        the part. ``touch`` is called as each chunk is handed over (the stall guard's clock).
        """
        assert self.fd is not None
        fd = self.fd
        end = offset + length
        for start in range(offset, end, chunk):
            data = await self._in_reader(_pread_all, fd, start, min(chunk, end - start))
            touch()
            yield data

    async def check_unchanged(self) -> None:
        """Fail when the file on disk is no longer the one measured (size, mtime, ctime, inode).

        Small files were read whole when measured, so what is sent is one version whatever
        happens to the file afterwards; they are not checked.

        Raises:
            TransferError: the file changed since it was measured, so what was read of it may
                mix two versions.
        """
        if self.stamp is None or self.path is None or self.data is not None:
            return
        try:
            now = _stamp(await asyncio.to_thread(os.stat, self.path))
        except OSError as exc:
            raise TransferError(
                f"{self.name!r} disappeared while it was being uploaded ({exc.strerror}); "
                "nothing was confirmed"
            ) from exc
        if now != self.stamp:
            raise TransferError(
                f"{self.name!r} changed while it was being uploaded (it was {self.stamp[0]:,} "
                f"bytes, now {now[0]:,}, and was written or touched meanwhile); nothing was "
                "confirmed. Upload it again once nothing writes to it."
            )

    async def read_part(
        self, offset: int, length: int, buffer: bytearray | None
    ) -> tuple[memoryview, int]:
        """Read ``length`` bytes at ``offset`` and their CRC32C, off the event loop.

        File sources are read into ``buffer`` (a reused part buffer of ``length`` bytes, so
        part-sized allocations do not pile up in the heap); in-memory sources are sliced without
        a copy and need no buffer.
        """
        if self.data is not None:
            view = memoryview(self.data).cast("B")[offset : offset + length]
            return view, crc32c_extend(0, view)
        assert buffer is not None
        assert len(buffer) == length
        if self.path is not None:
            return await asyncio.to_thread(_pread_into, self.path, offset, buffer)
        assert self.fileobj is not None
        return await asyncio.to_thread(
            _readinto_fileobj, self.fileobj, self.base_offset + offset, buffer
        )

    async def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return bytes(self.data[offset : offset + length])
        if self.fd is not None:
            return await self._in_reader(_pread_all, self.fd, offset, length)
        if self.path is not None:
            return await asyncio.to_thread(_pread_path, self.path, offset, length)
        assert self.fileobj is not None
        return await asyncio.to_thread(
            _read_fileobj, self.fileobj, self.base_offset + offset, length
        )

    def close(self) -> None:
        if self.spooled and self.fileobj is not None:
            self.fileobj.close()
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


#: Files up to this size are read when they are measured, in the same worker-thread hop: for
#: thousands of small files the hops, not the bytes, are the cost.
SMALL_FILE = 256 * 1024


def _measure_path(path: Path) -> tuple[str, os.stat_result, bytes | None, int | None]:
    """Resolve, stat and either read a small file or keep its descriptor, in one worker hop.

    The bytes of a small file are read from the descriptor that was measured, so they belong to
    the size and mtime recorded as its identity; a larger file's descriptor is returned open
    (the caller owns it).
    """
    # Non-blocking, so a FIFO is refused at once instead of waiting for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(f"Not a regular file: {path}")
        resolved = str(path.resolve())
        if st.st_size > SMALL_FILE:
            return resolved, st, None, fd
        head = _pread_all(fd, 0, st.st_size)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return resolved, st, head, None


async def _measure_owned(path: Path) -> tuple[str, os.stat_result, bytes | None, int | None]:
    """:func:`_measure_path` off the loop; a descriptor opened for a cancelled caller is closed."""
    measuring = asyncio.ensure_future(asyncio.to_thread(_measure_path, path))
    try:
        return await asyncio.shield(measuring)
    except asyncio.CancelledError:
        measuring.add_done_callback(_close_unclaimed)
        raise


def _close_unclaimed(
    task: asyncio.Future[tuple[str, os.stat_result, bytes | None, int | None]],
) -> None:
    if not task.cancelled() and task.exception() is None:
        fd = task.result()[3]
        if fd is not None:
            os.close(fd)


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _pread_path(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _pread_all(fd, offset, length)
    finally:
        os.close(fd)


def _pread_all(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    chunks = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            raise TransferError("The file got shorter while it was being uploaded")
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def _crc_fd(fd: int, offset: int, length: int, chunk: int) -> int:
    crc = 0
    end = offset + length
    for start in range(offset, end, chunk):
        crc = crc32c_extend(crc, _pread_all(fd, start, min(chunk, end - start)))
    return crc


def _pread_into(path: Path, offset: int, buffer: bytearray) -> tuple[memoryview, int]:
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = 0
        while got < len(view):
            n = os.preadv(fd, [view[got:]], offset + got)
            if n == 0:
                raise TransferError("The file got shorter while it was being uploaded")
            got += n
    finally:
        os.close(fd)
    return view, crc32c_extend(0, view)


def _readinto_fileobj(fileobj: IO[bytes], offset: int, buffer: bytearray) -> tuple[memoryview, int]:
    view = memoryview(buffer)
    fileobj.seek(offset)
    got = 0
    while got < len(view):
        n = fileobj.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise TransferError("The file object got shorter while it was being uploaded")
        got += n
    return view, crc32c_extend(0, view)


def _read_fileobj(fileobj: IO[bytes], offset: int, length: int) -> bytes:
    fileobj.seek(offset)
    data = fileobj.read(length)
    if len(data) != length:
        raise TransferError("The file object got shorter while it was being uploaded")
    return data


def guess_content_type(name: str, content_type: str | None) -> str:
    """Explicit type, else a guess from the name, else ``application/octet-stream``."""
    if content_type:
        return content_type
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


async def _spool(chunks: AsyncIterator[bytes], spool_dir: str | None) -> IO[bytes]:
    spool = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - owned by the _Source
    try:
        async for chunk in chunks:
            if chunk:
                await asyncio.to_thread(spool.write, chunk)
    except BaseException:
        spool.close()
        raise
    return spool


async def _iter_sync_file(fileobj: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    while True:
        chunk = await asyncio.to_thread(fileobj.read, chunk_size)
        if not chunk:
            return
        yield chunk


async def open_source(
    source: UploadSourceType,
    *,
    name: str | None,
    content_type: str | None,
    chunk_size: int,
    reader: Executor | None = None,
) -> _Source:
    """Measure a source; non-seekable streams are spooled to a temporary file, not to memory.

    A file too big to read when measured is read later by ``reader`` (default: the loop's
    executor).

    Raises:
        ValueError: bytes or a stream with no ``name``.
        FileNotFoundError / IsADirectoryError: a path that is not a readable file.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        resolved, st, head, fd = await _measure_owned(path)
        file_name = name or path.name
        return _Source(
            name=file_name,
            size=st.st_size,
            content_type=guess_content_type(file_name, content_type),
            path=path,
            data=head,
            identity=(resolved, st.st_size, st.st_mtime_ns),
            stamp=_stamp(st),
            fd=fd,
            reader=reader,
        )
    if isinstance(source, bytes | bytearray | memoryview):
        if not name:
            raise ValueError("Uploading bytes needs a name: upload(data, name='run.csv')")
        data = bytes(source) if isinstance(source, bytearray) else source
        return _Source(
            name=name,
            size=len(data),
            content_type=guess_content_type(name, content_type),
            data=data,
        )
    if isinstance(source, io.TextIOBase):
        raise ValueError("Open the file in binary mode ('rb') to upload it")
    if hasattr(source, "read"):
        fileobj: IO[bytes] = source  # type: ignore[assignment]
        file_name = name or os.path.basename(str(getattr(fileobj, "name", "") or ""))
        if not file_name:
            raise ValueError("This file object has no name: pass upload(f, name='run.csv')")
        seekable = False
        with contextlib.suppress(AttributeError, OSError, ValueError):
            seekable = bool(fileobj.seekable())
        if seekable:
            start = fileobj.tell()
            end = fileobj.seek(0, os.SEEK_END)
            fileobj.seek(start)
            return _Source(
                name=file_name,
                size=end - start,
                content_type=guess_content_type(file_name, content_type),
                fileobj=fileobj,
                base_offset=start,
            )
        spool = await _spool(_iter_sync_file(fileobj, chunk_size), None)
        return _spooled(spool, file_name, content_type)
    if hasattr(source, "__aiter__"):
        if not name:
            raise ValueError("Uploading a stream needs a name: upload(stream, name='run.csv')")
        spool = await _spool(aiter(source), None)
        return _spooled(spool, name, content_type)
    raise TypeError(
        f"Cannot upload a {type(source).__name__}: pass a path, bytes, a binary file object "
        "or an async iterable of bytes"
    )


def _spooled(spool: IO[bytes], name: str, content_type: str | None) -> _Source:
    size = spool.seek(0, os.SEEK_END)
    spool.seek(0)
    return _Source(
        name=name,
        size=size,
        content_type=guess_content_type(name, content_type),
        fileobj=spool,
        spooled=True,
    )


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            crc = crc32c_extend(crc, chunk)
    return crc

"""Open files of ``labric://``: buffered blocking files and streamed asynchronous ones.

Reading fetches byte ranges through :mod:`labric.fsspec.reading`, each pinned to the version of
the file first read. Writing spools to a local temporary file and uploads it whole on
``close()`` (or ``commit()`` inside a transaction), so a file appears on the platform whole or
not at all; a failed transaction's spool is dropped. The files call back into their filesystem
for the requests, on fsspec's IO loop for the blocking class.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import tempfile
from typing import IO, Any, Protocol

from fsspec.asyn import AbstractAsyncStreamedFile, sync
from fsspec.spec import AbstractBufferedFile

from labric.fsspec.paths import writable
from labric.models.files import FileContent

__all__ = ["FileHost", "LabricAsyncFile", "LabricFile"]


class FileHost(Protocol):
    """What the open files call back into: :class:`~labric.fsspec.LabricFileSystem`.

    A protocol rather than the class, which imports this module: naming it here would tie the
    two into an import cycle.
    """

    def _io_loop(self) -> asyncio.AbstractEventLoop: ...

    async def _info(self, path: str, refresh: bool = False, **kwargs: Any) -> dict[str, Any]: ...

    async def _exists(self, path: str, refresh: bool = False, **kwargs: Any) -> bool: ...

    async def _content_of(self, info: dict[str, Any]) -> FileContent: ...

    async def _read_open(self, file: Any, start: int, end: int) -> bytes: ...

    async def _upload(self, source: Any, path: str, **options: Any) -> None: ...


class LabricFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec ships no type hints
    """A file of :class:`LabricFileSystem`, opened ``rb``, ``wb`` or ``xb``.

    Reading fetches blocks with ``Range`` requests (fsspec's read-ahead cache decides their size,
    ``block_size``, 5 MiB by default); every read is pinned to the version of the file first
    read. Writing spools to a temporary file and uploads it on ``close()`` (or ``commit()``
    inside a transaction): the file appears on the platform whole or not at all.
    """

    def __init__(self, fs: FileHost, path: str, mode: str = "rb", **kwargs: Any) -> None:
        self._content: FileContent | None = None
        self._etag: str | None = None
        self._spool: IO[bytes] | None = None
        self._upload_options = {
            key: kwargs.pop(key)
            for key in ("instrument_id", "job_execution_id", "content_type")
            if key in kwargs
        }
        # fsspec's loop even for an asynchronous filesystem: these calls block this thread.
        io_loop = fs._io_loop()
        if mode == "rb":
            info = sync(io_loop, fs._info, path)
            if info["type"] != "file":
                raise IsADirectoryError(errno.EISDIR, "A directory, not a file", path)
            if info["size"] is None:
                content = sync(io_loop, fs._content_of, info)
                info = {**info, "size": content.size_bytes}
                self._content = content
            self._details = info
            kwargs.setdefault("size", info["size"])
        elif mode in ("wb", "xb"):
            writable(path)
            if mode == "xb" and sync(io_loop, fs._exists, path, refresh=True):
                raise FileExistsError(errno.EEXIST, "A file already exists at this path", path)
        else:
            raise ValueError(f"Mode {mode!r} is not supported: use 'rb', 'wb' or 'xb'")
        super().__init__(fs, path, mode=mode, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = sync(self.fs._io_loop(), self.fs._read_open, self, start, end)
        return data

    def _initiate_upload(self) -> None:
        self._spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed on upload or discard

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._spool is not None
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._spool)
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        """Upload what was written (at ``close()``, or at the end of a transaction)."""
        spool, self._spool = self._spool, None
        if spool is None:
            return
        try:
            spool.seek(0)
            sync(self.fs._io_loop(), self.fs._upload, spool, self.path, **self._upload_options)
        finally:
            spool.close()

    def discard(self) -> None:
        """Drop what was written (a failed transaction)."""
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()


class LabricAsyncFile(AbstractAsyncStreamedFile):  # type: ignore[misc]  # no fsspec type hints
    """A file opened for reading by :meth:`LabricFileSystem.open_async`: each ``await read(n)``
    is one ``Range`` request, pinned to the version of the file first read (no read-ahead)."""

    def __init__(
        self,
        fs: FileHost,
        info: dict[str, Any],
        content: FileContent | None,
        **kwargs: Any,
    ) -> None:
        self._content = content
        self._etag: str | None = None
        self._details = info
        kwargs.pop("size", None)
        super().__init__(fs, info["name"], mode="rb", size=info["size"], **kwargs)

    async def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = await self.fs._read_open(self, start, end)
        return data

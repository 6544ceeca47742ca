"""The ``labric://`` filesystem: reading, writing and deleting platform files.

:class:`LabricFileSystem` builds on :class:`~labric.fsspec.namespace.LabricNamespace` (clients,
paths, listings, metadata) and maps fsspec's content calls onto the client: whole reads through
``files.read_bytes`` (CRC32C-verified), ranged and open-file reads through
:mod:`~labric.fsspec.reading`, many ranges at once through :mod:`~labric.fsspec.ranges`, bulk
``get`` through :mod:`~labric.fsspec.transfers`, writes
through :mod:`~labric.fsspec.writing` (each replacing what was at its path unless
``keep_versions``, see :mod:`~labric.fsspec.versions`), copies through
:mod:`~labric.fsspec.copying` (a move is a copy, then a delete), deletes through
:mod:`~labric.fsspec.deleting`, open files from :mod:`~labric.fsspec.files`. Directories are
implied (:mod:`~labric.fsspec.directories`: ``mkdir`` refuses existing paths and creates
nothing). The fsspec methods stay here and delegate.
:mod:`labric.fsspec` describes the design.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

from fsspec.asyn import sync
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.implementations.local import make_path_posix, trailing_sep
from fsspec.utils import isfilelike

from labric._transfer.download import DEFAULT_READ_LIMIT
from labric.errors import NotFoundError, TransferError
from labric.fsspec import copying, deleting, directories, ranges, transfers, writing
from labric.fsspec.files import LabricAsyncFile, LabricFile
from labric.fsspec.namespace import LabricNamespace
from labric.fsspec.paths import byte_range, not_found
from labric.fsspec.reading import read_open, read_range
from labric.models.files import FileContent

__all__ = ["LabricFileSystem"]


class LabricFileSystem(LabricNamespace):
    """The files of a Labric organisation as an fsspec ``AsyncFileSystem`` (``labric://``).

    Reading, writing and deleting; what exists (paths, listings, metadata) and the clients are
    :class:`~labric.fsspec.namespace.LabricNamespace`'s.

    Args:
        api_key: An API key ``lbk_<prefix>_<secret>``; default: ``LABRIC_API_KEY``, read now.
        base_url: The API's base URL; default: ``LABRIC_API_BASE_URL``, else the hosted one.
        asynchronous: Use from a running event loop, awaiting the ``_``-prefixed methods.
        loop: The loop of an asynchronous filesystem (default: the running one).
        batch_size: Most files a bulk call (``get``, ``put``, ``rm``) moves at once (default:
            the client's transfer concurrency).
        keep_versions: Writing to an existing path adds a newer file and keeps the older
            ones (reachable as ``.id/<file_id>``); by default the older ones are deleted once
            the new file is confirmed, so a path holds one file, as in an object store.
        use_listings_cache: Keep complete directory listings until a write or refresh.
        listings_expiry_time: Seconds a cached listing stays valid (default: until invalidated).
        max_paths: Most directory listings kept.
        **client_options: The other arguments of :class:`~labric.AsyncLabric` (``timeout``,
            ``max_retries``, ``retry``, ``transfer``, ``max_connections``, ``allow_insecure``).

    Raises:
        ConfigurationError: the key is missing or malformed, or the URL is refused.

    Example::

        fs = fsspec.filesystem("labric")
        fs.put("run42/", "run42/", recursive=True)
        with fs.open("run42/plate0/read0.csv") as f:
            header = f.readline()
        fs.close()
    """

    # -- reading ----------------------------------------------------------------------------------

    async def _resolve(self, path: str) -> dict[str, Any]:
        info = await self._info(path)
        if info["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, "A directory, not a file", info["name"])
        return info

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        info = await self._resolve(path)
        client = await self._labric()
        try:
            if not start and end is None:
                # Whole, CRC32C-verified; cat asks for the whole file, so its listed size is
                # allowed past read_bytes' default bound (the stated size still caps the read).
                bound = max(DEFAULT_READ_LIMIT, info["size"] or 0)
                return await client.files.read_bytes(info["file_id"], max_bytes=bound)
            content = await client.files.content(info["file_id"])
        except NotFoundError as exc:
            raise not_found(info["name"], exc) from exc
        size = content.size_bytes if content.size_bytes is not None else info["size"]
        if size is None:
            raise TransferError(f"The server does not say how large {info['name']} is")
        begin, stop = byte_range(start, end, size)
        data, _ = await read_range(client, content, begin, stop, etag=None)
        return data

    async def _cat_ranges(
        self,
        paths: list[Any],
        starts: Any,
        ends: Any,
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Byte ranges of files: each file resolved once, the ranges fetched concurrently, at
        most ``batch_size`` at a time (see :mod:`~labric.fsspec.ranges`)."""
        if max_gap is not None:
            raise NotImplementedError("max_gap: merge the ranges first (fsspec.utils)")
        return await ranges.cat_ranges(
            self, paths, starts, ends, batch_size=batch_size, on_error=on_error
        )

    async def _content_of(self, info: dict[str, Any]) -> FileContent:
        """The signed URL (and size) of a listed file."""
        client = await self._labric()
        try:
            return await client.files.content(info["file_id"])
        except NotFoundError as exc:
            raise not_found(info["name"], exc) from exc

    async def _read_open(self, file: LabricFile | LabricAsyncFile, start: int, end: int) -> bytes:
        """One read of an open file: a range request with the file's URL, pinned to its ETag."""
        return await read_open(
            await self._labric(), file, start, end, lambda: self._content_of(file.details)
        )

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LabricFile:
        return LabricFile(
            self,
            self._strip_protocol(path),
            mode=mode,
            block_size=block_size or "default",
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    async def open_async(self, path: str, mode: str = "rb", **kwargs: Any) -> LabricAsyncFile:
        """Open a file for reading from a coroutine (``asynchronous=True`` filesystems).

        ``await f.read(n)`` is one range request; ``seek`` and ``tell`` work as on any file.
        Use it as ``async with await fs.open_async(path) as f``.

        Raises:
            ValueError: a mode other than ``rb`` (write with ``_pipe_file`` / ``_put_file``).
        """
        if mode != "rb":
            raise ValueError(f"open_async reads only ('rb'), not {mode!r}: write with _pipe_file")
        info = await self._resolve(path)
        content = None
        if info["size"] is None:
            content = await self._content_of(info)
            info = {**info, "size": content.size_bytes}
        return LabricAsyncFile(self, info, content, **kwargs)

    async def _get_file(
        self,
        rpath: str,
        lpath: Any,
        callback: Any = DEFAULT_CALLBACK,
        **kwargs: Any,
    ) -> None:
        info = await self._info(rpath)
        if info["type"] == "directory":
            await asyncio.to_thread(os.makedirs, lpath, exist_ok=True)
            return
        if isfilelike(lpath):
            data = await self._cat_file(rpath)
            await asyncio.to_thread(lpath.write, data)
            return
        client = await self._labric()
        try:
            await client.files.download(
                info["file_id"], lpath, overwrite=True, on_progress=transfers.bytes_to(callback)
            )
        except NotFoundError as exc:
            raise not_found(info["name"], exc) from exc

    async def _get(
        self,
        rpath: Any,
        lpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        maxdepth: int | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Download files, concurrently, through the engine's ``download_many``.

        Paths are expanded and mapped to local names exactly as fsspec's own ``get`` does;
        each file is verified in a staging directory, then renamed into place.
        """
        if isinstance(rpath, list) and isinstance(lpath, list):
            rpaths = [self._strip_protocol(p) for p in rpath]
            lpaths = [make_path_posix(p) for p in lpath]
            infos = await self._infos(rpaths, batch_size)
        else:
            copy_dir = isinstance(rpath, str) and not trailing_sep(rpath)
            rpath = self._strip_protocol(rpath)
            rpaths = await self._expand_path(rpath, recursive=recursive, maxdepth=maxdepth)
            infos = await self._infos(rpaths, batch_size)
            if isinstance(rpath, str) and (not recursive or maxdepth is not None):
                # A non-recursive copy does not copy directories.
                rpaths = [p for p, i in zip(rpaths, infos, strict=True) if i["type"] == "file"]
                infos = [i for i in infos if i["type"] == "file"]
                if not rpaths:
                    return
            lpaths = transfers.local_paths(rpath, rpaths, lpath, copy_dir=copy_dir)
        targets = await asyncio.to_thread(transfers.download_targets, infos, lpaths)
        callback.set_size(len(targets))
        if targets:
            await transfers.download_into_place(
                await self._labric(), targets, batch_size or self.batch_size, callback
            )

    # -- writing ----------------------------------------------------------------------------------

    async def _upload(self, source: Any, path: str, **options: Any) -> None:
        await writing.upload(self, source, path, **options)  # an open file's commit

    async def _pipe_file(
        self,
        path: str,
        value: bytes,
        mode: str = "overwrite",
        instrument_id: str | None = None,
        job_execution_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        await writing.write_one(
            self,
            bytes(value),
            path,
            mode=mode,
            instrument_id=instrument_id,
            job_execution_id=job_execution_id,
        )

    async def _put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Any = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        instrument_id: str | None = None,
        job_execution_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if os.path.isdir(lpath):
            return  # directories are implied by the paths of the files under them
        await writing.write_one(
            self,
            lpath,
            rpath,
            mode=mode,
            instrument_id=instrument_id,
            job_execution_id=job_execution_id,
            on_progress=transfers.bytes_to(callback),
        )

    async def _put(
        self,
        lpath: Any,
        rpath: Any,
        recursive: bool = False,
        callback: Any = DEFAULT_CALLBACK,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        mode: str = "overwrite",
        instrument_id: str | None = None,
        job_execution_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Upload files, concurrently, through the engine's ``upload_many``: one job execution
        per call (see :mod:`~labric.fsspec.writing`)."""
        await writing.put(
            self,
            lpath,
            rpath,
            recursive=recursive,
            callback=callback,
            batch_size=batch_size,
            maxdepth=maxdepth,
            mode=mode,
            instrument_id=instrument_id,
            job_execution_id=job_execution_id,
        )

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        """Create an empty file; with ``truncate=False`` an existing file is left as it is.

        Platform files never change in place and record no modification time to update, so
        touching an existing file without truncating changes nothing.
        """
        if not truncate and self.exists(path):
            return
        with self.open(path, "wb", **kwargs):
            pass

    # -- copying and moving ---------------------------------------------------------------------

    async def _cp_file(
        self,
        path1: str,
        path2: str,
        job_execution_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        await copying.copy_entry(self, await self._info(path1), path2, job_execution_id)

    async def _copy(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        on_error: str | None = None,
        maxdepth: int | None = None,
        batch_size: int | None = None,
        job_execution_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Copy files (and, with ``recursive=True``, trees) on the server, concurrently; a copy to
        an existing path replaces it (see :mod:`~labric.fsspec.copying`)."""
        await copying.copy_paths(
            self,
            path1,
            path2,
            recursive=recursive,
            on_error=on_error,
            maxdepth=maxdepth,
            batch_size=batch_size,
            job_execution_id=job_execution_id,
        )

    async def _mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Move (rename) files or, with ``recursive=True``, trees: copy on the server, then
        delete the sources. Nothing is deleted unless every copy succeeded."""
        if path1 == path2:
            return
        await self._copy(
            path1, path2, recursive=recursive, maxdepth=maxdepth, on_error="raise", **kwargs
        )
        await self._rm(path1, recursive=recursive)

    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Move (rename) files or, with ``recursive=True``, trees: copy on the server, then
        delete the sources. Nothing is deleted unless every copy succeeded."""
        sync(self._io_loop(), self._mv, path1, path2, recursive, maxdepth, **kwargs)

    # -- directories -------------------------------------------------------------------------------

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Refuse an existing path; else nothing to do (see :mod:`~labric.fsspec.directories`).

        Directories are implied by the files under them, as in object stores: a new one needs
        no creating and appears with its first file.

        Raises:
            FileExistsError: a file or a directory is already at ``path`` (unless
                ``exist_ok=True`` is passed and it is a directory).
        """
        await self._makedirs(path, exist_ok=bool(kwargs.get("exist_ok", False)))

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Refuse an existing path (see :mod:`~labric.fsspec.directories`); else do nothing."""
        await directories.check_makedirs(self, path, exist_ok)

    async def _rmdir(self, path: str) -> None:
        await directories.check_rmdir(self, path)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory: since directories exist only while files lie under them,
        an existing one is never empty, and this refuses it (a missing one is nothing to do).

        Raises:
            OSError: ``path`` is a directory (``errno.ENOTEMPTY``); delete what it holds with
                ``rm(path, recursive=True)``.
            NotADirectoryError: ``path`` is a file.
        """
        sync(self._io_loop(), self._rmdir, path)

    # -- deleting ----------------------------------------------------------------------------------

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        await self._rm(path)

    async def _rm(
        self,
        path: Any,
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Delete files: every file at each path (all its versions), or the one ``.id/`` file.

        Directories are implied, so they vanish with the last file under them; a directory
        given without ``recursive=True`` is refused.
        """
        await deleting.remove(
            self, path, recursive=recursive, batch_size=batch_size, maxdepth=maxdepth
        )

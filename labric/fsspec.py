"""``labric://``: the Labric platform as an fsspec filesystem, for pandas, Dask and friends.

With it, any fsspec-aware engine reads and writes Labric files::

    import pandas as pd
    df = pd.read_csv("labric://run42/plate0/read0.csv")   # LABRIC_API_KEY / LABRIC_API_BASE_URL

    import dask.dataframe as dd
    ddf = dd.read_csv("labric://run42/*/*.csv", storage_options={"api_key": key})

The class is registered for the ``labric`` protocol through the ``fsspec.specs`` entry point, so
``fsspec.filesystem("labric", ...)`` and ``fsspec.open("labric://...")`` find it. fsspec is an
optional dependency (``pip install 'labric[fsspec]'``); ``import labric`` never imports it.

Paths
    A file's path is its platform ``original_path`` (a leading ``/`` dropped). Directories are
    implied by ``/`` in paths, as in object stores: one exists while a file lies under it, and
    none needs creating. Several files may share a path (an instrument uploads ``plate1.csv`` on
    every run): the **newest wins**, as in the listing's order (newest first), so ``ls``,
    ``info``, ``open`` and ``get`` see the latest upload, and ``put`` to an existing path adds a
    newer file rather than changing the old one. The older files stay reachable by id as
    ``labric://.id/<file_id>``. ``rm`` of a path deletes every file at that path, so the path is
    gone afterwards; ``rm`` of an ``.id/`` path deletes that one file. ``.id`` is a virtual
    directory: never listed, and a platform path under ``.id/`` is reachable only by its id.

Requests
    ``ls``, ``info`` and ``find`` (hence ``glob``) are listings of ``GET /v1/files``, narrowed on
    the server by the path (its ``query`` filter) and matched exactly here; complete listings are
    kept in ``dircache`` until this filesystem writes under them, ``refresh=True`` is passed, or
    ``invalidate_cache()`` is called. Whole-file ``cat_file`` is verified against the file's
    CRC32C; a byte range (``start``/``end``) and every read of an ``open()``ed file is one
    ``Range`` request to the signed storage URL, pinned with ``If-Match`` to the version first
    read, so a file replaced underneath an open handle fails instead of mixing versions. ``get``
    and ``put`` go through the transfer engine's ``download_many`` and ``upload_many``:
    concurrent, checksummed, atomic on disk, and resumable. ``ukey`` and ``checksum`` come from
    the CRC32C the platform records.

Event loops and lifecycle
    fsspec runs a blocking filesystem's coroutines on its own IO-loop thread, and an
    ``asynchronous=True`` one on the caller's loop. An :class:`~labric.AsyncLabric` (and its
    aiohttp session) belongs to one loop, so the filesystem keeps one client per loop it is used
    on, created there on first use. :meth:`LabricFileSystem.close` (or ``with fs:``) and
    :meth:`LabricFileSystem.aclose` (or ``async with fs:``) close them; a closed filesystem opens
    a new client when used again, because fsspec caches instances by their arguments and hands
    the same one to every later ``fsspec.filesystem(...)`` and ``pandas.read_csv(...)`` call.
    Engines such as pandas and Dask never close the filesystems they create, so this module keeps
    a registry of open filesystems and, at interpreter exit, closes their clients with the public
    ``aclose()``: on fsspec's IO loop, still running then (its thread is a daemon), or, for a
    loop that has ended, from a loop of its own, which detaches the session. There is no
    ``__del__`` or finalizer poking at aiohttp's internals. On an ``asynchronous=True``
    filesystem, ``await fs.open_async(path)`` opens a file for reading without blocking.

Pickling
    A filesystem pickles as its constructor arguments (no client, no session, no loop), so a
    Dask worker rebuilds it and opens its own client. ``loop`` and ``asynchronous`` are left out:
    a rebuilt filesystem is a blocking one, as a worker has no caller's loop to join. With
    ``api_key`` omitted, the worker reads its own ``LABRIC_API_KEY``; pass ``api_key`` (for
    instance in ``storage_options``) when workers run elsewhere.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable
from glob import has_magic
from pathlib import Path
from typing import IO, Any

try:
    from fsspec.asyn import AbstractAsyncStreamedFile, AsyncFileSystem, get_loop, sync
    from fsspec.callbacks import DEFAULT_CALLBACK
    from fsspec.implementations.local import LocalFileSystem, make_path_posix, trailing_sep
    from fsspec.spec import AbstractBufferedFile, make_instance
    from fsspec.utils import isfilelike, other_paths
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "labric.fsspec needs fsspec, an optional dependency: pip install 'labric[fsspec]'"
    ) from exc

from labric._client import AsyncLabric
from labric._core.config import ClientConfig
from labric._transfer.checksum import crc32c_from_b64
from labric._transfer.download import DEFAULT_READ_LIMIT
from labric.errors import (
    APIStatusError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    TransferError,
    UsageError,
)
from labric.models.files import FileContent, FileInfo
from labric.models.transfers import TransferProgress

__all__ = ["LabricAsyncFile", "LabricFile", "LabricFileSystem"]

#: The virtual directory of files addressed by id: ``labric://.id/<file_id>``.
ID_DIR = ".id"
#: Constructor arguments a pickle leaves out: they belong to the process that made it.
_UNPICKLED = ("loop", "asynchronous")
#: Seconds the exit hook waits for one filesystem's clients to close.
_EXIT_CLOSE_TIMEOUT = 10.0


# -- paths ------------------------------------------------------------------------------------


def _fs_path(f: FileInfo) -> str | None:
    """The path a file is listed under, or ``None`` when it has none (reachable by id only)."""
    path = (f.original_path or "").lstrip("/")
    if not path or path == ID_DIR or path.startswith(ID_DIR + "/"):
        return None
    return path


def _id_of(path: str) -> str | None:
    """The file id of an ``.id/<file_id>`` path, else ``None``."""
    if not path.startswith(ID_DIR + "/"):
        return None
    file_id = path[len(ID_DIR) + 1 :]
    if not file_id or "/" in file_id:
        raise FileNotFoundError(errno.ENOENT, "Not a file id path (.id/<file_id>)", path)
    return file_id


def _writable(path: str) -> str:
    """Check a path a new file can be given; return it."""
    if not path:
        raise ValueError("A file needs a path, not the root: put(lpath, 'run42/plate1.csv')")
    if path == ID_DIR or path.startswith(ID_DIR + "/"):
        raise ValueError(f"{ID_DIR}/ addresses existing files by id; write to a path instead")
    return path


def _file_entry(path: str, f: FileInfo) -> dict[str, Any]:
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


def _dir_entry(path: str) -> dict[str, Any]:
    return {"name": path, "type": "directory", "size": 0}


def _tree(base: str, files: Iterable[FileInfo]) -> dict[str, dict[tuple[str, str], Any]]:
    """The children of every directory at or below ``base`` (``""`` is the root).

    ``files`` come newest first, so the first file seen at a path is the one it resolves to.
    Keys are ``(name, type)``: a path can be both a file and a directory, as in object stores.
    """
    prefix = base + "/" if base else ""
    tree: dict[str, dict[tuple[str, str], Any]] = {}
    for f in files:
        path = _fs_path(f)
        if path is None or not path.startswith(prefix) or path == prefix:
            continue
        parts = path[len(prefix) :].split("/")
        parent = base
        for depth, part in enumerate(parts):
            name = f"{parent}/{part}" if parent else part
            children = tree.setdefault(parent, {})
            if depth == len(parts) - 1:
                children.setdefault((name, "file"), f)
            else:
                children.setdefault((name, "directory"), None)
            parent = name
    return tree


def _entries(children: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    out = [
        _file_entry(name, f) if kind == "file" else _dir_entry(name)
        for (name, kind), f in children.items()
    ]
    return sorted(out, key=lambda e: (e["name"], e["type"]))


def _byte_range(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    """``[start, end)`` as Python slices mean it (negative from the end), clamped to the file."""
    begin = 0 if start is None else (start + size if start < 0 else start)
    stop = size if end is None else (end + size if end < 0 else end)
    return max(0, min(begin, size)), max(0, min(stop, size))


def _contained(root: str, paths: list[str]) -> None:
    """Refuse local destinations that a platform name (``../x``) would put outside ``root``."""
    base = os.path.abspath(root)
    for path in paths:
        full = os.path.abspath(path)
        if full != base and not full.startswith(base.rstrip(os.sep) + os.sep):
            raise TransferError(f"Refusing to write {path!r}: it lies outside {root!r}")


def _not_found(path: str, exc: BaseException | None = None) -> FileNotFoundError:
    error = FileNotFoundError(errno.ENOENT, "No such file on Labric", path)
    if exc is not None:
        error.__cause__ = exc
    return error


def _move_into_place(src: str, dest: str) -> None:
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(src, dest)  # another file system: copy, then remove


# -- lifecycle ---------------------------------------------------------------------------------

#: Filesystems with clients open, by ``id()``: fsspec compares filesystems by their arguments,
#: so two instances made alike (one outside the instance cache) would be one entry of a set.
_open_filesystems: weakref.WeakValueDictionary[int, LabricFileSystem] = (
    weakref.WeakValueDictionary()
)


@atexit.register
def _close_open_filesystems() -> None:
    for fs in list(_open_filesystems.values()):
        fs._close_at_exit()


# -- the filesystem -------------------------------------------------------------------------------


class LabricFileSystem(AsyncFileSystem):  # type: ignore[misc]  # fsspec ships no type hints
    """The files of a Labric organisation as an fsspec ``AsyncFileSystem`` (``labric://``).

    Args:
        api_key: An API key ``lbk_<prefix>_<secret>``; default: ``LABRIC_API_KEY``, read now.
        base_url: The API's base URL; default: ``LABRIC_API_BASE_URL``, else the hosted one.
        asynchronous: Use from a running event loop, awaiting the ``_``-prefixed methods.
        loop: The loop of an asynchronous filesystem (default: the running one).
        batch_size: Most files a bulk call (``get``, ``put``, ``rm``) moves at once (default:
            the client's transfer concurrency).
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

    protocol = "labric"
    root_marker = ""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        asynchronous: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        batch_size: int | None = None,
        use_listings_cache: bool = True,
        listings_expiry_time: float | None = None,
        max_paths: int | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(
            asynchronous=asynchronous,
            loop=loop,
            batch_size=batch_size,
            use_listings_cache=use_listings_cache,
            listings_expiry_time=listings_expiry_time,
            max_paths=max_paths,
        )
        # Resolved once, now: a missing or malformed key fails here, naming the variable, and
        # every client this filesystem opens later talks to the same place with the same key.
        self._config = ClientConfig.resolve(api_key, base_url=base_url, **client_options)
        self._client_options = client_options
        self._clients: dict[asyncio.AbstractEventLoop, AsyncLabric] = {}
        self._clients_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"<LabricFileSystem base_url={self._config.base_url!r} key={self._config.key_prefix!r}>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        options = {k: v for k, v in self.storage_options.items() if k not in _UNPICKLED}
        return make_instance, (type(self), self.storage_args, options)

    # -- clients, one per event loop -------------------------------------------------------------

    async def _labric(self) -> AsyncLabric:
        """The client of the running loop, opened on first use (and again after a close)."""
        loop = asyncio.get_running_loop()
        with self._clients_lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                client = AsyncLabric(
                    self._config.api_key, base_url=self._config.base_url, **self._client_options
                )
                self._clients[loop] = client
                _open_filesystems[id(self)] = self
            dead = [other for other in self._clients if other.is_closed()]
            orphans = [self._clients.pop(other) for other in dead]
        for orphan in orphans:
            # Its loop is closed: aclose() detaches the session without touching that loop.
            await orphan.aclose()
        return client

    async def aclose(self) -> None:
        """Close every client this filesystem opened; it opens a new one if used again.

        Each client's session is closed in its own loop (or dropped, when that loop is gone).
        """
        with self._clients_lock:
            clients = list(self._clients.values())
            self._clients.clear()
            _open_filesystems.pop(id(self), None)
        for client in clients:
            await client.aclose()

    def close(self) -> None:
        """Blocking :meth:`aclose`, for code outside an event loop.

        Raises:
            UsageError: called from a running event loop (``await fs.aclose()`` there).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise UsageError("close() blocks; inside a coroutine use await fs.aclose()")
        if not self._clients:
            return
        io_loop = self._loop
        if io_loop is not None and io_loop.is_running():
            sync(io_loop, self.aclose)
        else:
            asyncio.run(self.aclose())

    def _close_at_exit(self) -> None:
        """Close the clients whose loops still run (fsspec's IO loop, at interpreter exit)."""
        with self._clients_lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for loop, client in clients:
            with contextlib.suppress(Exception):
                if loop.is_running():
                    future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                    future.result(_EXIT_CLOSE_TIMEOUT)
                else:
                    # Its loop is over: closing from a loop of our own detaches the session.
                    asyncio.run(client.aclose())

    def __enter__(self) -> LabricFileSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LabricFileSystem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _io_loop(self) -> asyncio.AbstractEventLoop:
        """The loop blocking calls of open files run on (fsspec's, for an asynchronous fs)."""
        loop: asyncio.AbstractEventLoop | None = self._loop
        if loop is None:
            loop = get_loop()
        assert loop is not None
        return loop

    def _width(self, batch_size: int | None) -> int:
        """How many files a bulk call works on at once."""
        width: int = batch_size or self.batch_size or self._config.transfer.concurrency
        return width

    # -- paths -------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        stripped: str = super()._strip_protocol(path)
        return stripped.lstrip("/")

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget cached listings: all of them, or those at, under and above ``path``.

        The parents go too: a file written or deleted at ``path`` changes their listings.
        """
        if path is None:
            self.dircache.clear()
        else:
            path = self._strip_protocol(path)
            below = f"{path}/" if path else ""
            for cached in [key for key in self.dircache if key.startswith(below)]:
                self.dircache.pop(cached, None)
            parent = path
            while True:
                self.dircache.pop(parent, None)
                if not parent:
                    break
                parent = self._parent(parent)
        super().invalidate_cache(path)

    # -- listings ------------------------------------------------------------------------------

    async def _listing(self, contains: str) -> list[FileInfo]:
        """Every file whose path contains ``contains`` (any case; the server's filter), newest
        first. Callers match exactly; the filter only spares listing the whole organisation."""
        client = await self._labric()
        return [f async for f in client.files.list(query=contains or None)]

    async def _by_id(self, path: str, file_id: str) -> FileInfo:
        client = await self._labric()
        try:
            return await client.files.get(file_id)
        except NotFoundError as exc:
            raise _not_found(path, exc) from exc

    def _cached_entry(self, path: str) -> dict[str, Any] | None:
        try:
            listing = self.dircache[self._parent(path)]
        except KeyError:
            return None
        found = [e for e in listing if e["name"] == path]
        # A file shadows a directory of the same name, as in _info below.
        for entry in sorted(found, key=lambda e: e["type"] != "file"):
            return dict(entry)
        return None

    async def _info(self, path: str, refresh: bool = False, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if not path:
            return _dir_entry("")
        file_id = _id_of(path)
        if file_id is not None:
            return _file_entry(path, await self._by_id(path, file_id))
        if path == ID_DIR:
            raise _not_found(path)
        if not refresh:
            cached = self._cached_entry(path)
            if cached is not None:
                return cached
        is_dir = False
        for f in await self._listing(path):
            candidate = _fs_path(f)
            if candidate == path:
                return _file_entry(path, f)  # the newest file at this path
            if candidate is not None and candidate.startswith(path + "/"):
                is_dir = True
        if is_dir:
            return _dir_entry(path)
        raise _not_found(path)

    async def _ls(
        self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any
    ) -> list[Any]:
        path = self._strip_protocol(path)
        if path == ID_DIR or _id_of(path) is not None:
            entries = [await self._info(path)]  # a file by id; the .id directory is not listed
        else:
            cached = None if refresh else self.dircache.get(path)
            if cached is not None:
                entries = [dict(e) for e in cached]
            else:
                files = await self._listing(f"{path}/" if path else "")
                children = _tree(path, files).get(path)
                if children:
                    entries = _entries(children)
                    self.dircache[path] = [dict(e) for e in entries]
                elif path:
                    entries = [await self._info(path, refresh=True)]  # a file, or not found
                else:
                    entries = []  # an empty organisation
        return entries if detail else [e["name"] for e in entries]

    async def _find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        prefix: str = "",
        **kwargs: Any,
    ) -> Any:
        """Every file under ``path`` from one listing (not one per directory).

        ``prefix`` (passed by ``glob``) narrows to names under ``path`` starting with it.
        """
        path = self._strip_protocol(path)
        if path == ID_DIR or _id_of(path) is not None:
            one = {path: await self._info(path)}
            return one if detail else list(one)
        base = f"{path}/" if path else ""
        files = await self._listing(base + prefix)
        if prefix:
            files = [f for f in files if (_fs_path(f) or "").startswith(base + prefix)]
        tree = _tree(path, files)
        out: dict[str, dict[str, Any]] = {}
        for directory, children in tree.items():
            entries = _entries(children)
            if not (prefix and directory == path):
                # The listing is not limited in depth, so it holds every file of each directory
                # under ``path`` (of ``path`` itself only without a prefix): later ls and info
                # calls (glob's matches, an engine's per-file lookups) are answered from it.
                self.dircache[directory] = entries
            # How far below ``path`` the directory is; its children are one further down.
            depth = 0 if directory == path else directory[len(base) :].count("/") + 1
            if maxdepth is not None and depth >= maxdepth:
                continue
            for entry in entries:
                if entry["type"] == "file":
                    out[entry["name"]] = dict(entry)  # a file shadows a directory of that name
                elif withdirs:
                    out.setdefault(entry["name"], dict(entry))
        if withdirs and path and out:
            out.setdefault(path, _dir_entry(path))
        if not out and path:
            with contextlib.suppress(FileNotFoundError):
                info = await self._info(path, refresh=True)
                if info["type"] == "file":
                    out[path] = info
        names = sorted(out)
        return {name: out[name] for name in names} if detail else names

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
            raise _not_found(info["name"], exc) from exc
        size = content.size_bytes if content.size_bytes is not None else info["size"]
        if size is None:
            raise TransferError(f"The server does not say how large {info['name']} is")
        begin, stop = _byte_range(start, end, size)
        data, _ = await self._read_range(client, content, begin, stop, etag=None)
        return data

    async def _read_range(
        self,
        client: AsyncLabric,
        content: FileContent,
        begin: int,
        stop: int,
        *,
        etag: str | None,
    ) -> tuple[bytes, str | None]:
        """Bytes ``[begin, stop)`` by one ``Range`` request; returns them and the object's ETag.

        With ``etag``, the request is pinned to that version of the object (``If-Match``).
        """
        if stop <= begin:
            return b"", etag
        headers = {"Range": f"bytes={begin}-{stop - 1}"}
        if etag is not None:
            headers["If-Match"] = etag
        # Ranged reads need the transport's storage stream, which the public resources keep for
        # whole files; this module is part of the SDK and shares the client's one session.
        transport = client._transport
        url = content.download_url

        async def once() -> tuple[bytes, str | None]:
            async with transport.stream("GET", url, headers=headers) as resp:
                if resp.status != 206:
                    raise TransferError("The storage server ignored a Range request")
                data = await resp.read()
                return data, resp.headers.get("ETag")

        try:
            data, tag = await transport.retrying(once, method="GET", url=url)
        except APIStatusError as exc:
            if exc.status_code == 412:
                raise IntegrityError(
                    f"File {content.file_id} changed on the server while it was open"
                ) from exc
            raise
        if len(data) != stop - begin:
            raise TransferError(
                f"Range {begin}-{stop - 1} of file {content.file_id} returned {len(data)} bytes"
            )
        return data, tag

    async def _content_of(self, info: dict[str, Any]) -> FileContent:
        """The signed URL (and size) of a listed file."""
        client = await self._labric()
        try:
            return await client.files.content(info["file_id"])
        except NotFoundError as exc:
            raise _not_found(info["name"], exc) from exc

    async def _read_open(self, file: LabricFile | LabricAsyncFile, start: int, end: int) -> bytes:
        """One read of an open file: a range request with the file's URL, pinned to its ETag."""
        client = await self._labric()
        for attempt in range(2):
            if file._content is None:
                file._content = await self._content_of(file.details)
            try:
                data, tag = await self._read_range(
                    client, file._content, start, min(end, file.size), etag=file._etag
                )
            except PermissionDeniedError:
                if attempt:
                    raise
                file._content = None  # the signed URL expired: ask for a fresh one, once
                continue
            if file._etag is None:
                file._etag = tag
            return data
        raise AssertionError("unreachable")  # pragma: no cover

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
                info["file_id"], lpath, overwrite=True, on_progress=_bytes_to(callback)
            )
        except NotFoundError as exc:
            raise _not_found(info["name"], exc) from exc

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

        Paths are expanded and mapped to local names exactly as fsspec's own ``get`` does.
        ``download_many`` writes, verifies and fsyncs each file in a staging directory next to
        the destinations, from which it is renamed into place.
        """
        if isinstance(rpath, list) and isinstance(lpath, list):
            rpaths = [self._strip_protocol(p) for p in rpath]
            lpaths = [make_path_posix(p) for p in lpath]
            infos = await self._infos(rpaths, batch_size)
        else:
            source_is_str = isinstance(rpath, str)
            source_not_trailing_sep = source_is_str and not trailing_sep(rpath)
            rpath = self._strip_protocol(rpath)
            rpaths = await self._expand_path(rpath, recursive=recursive, maxdepth=maxdepth)
            infos = await self._infos(rpaths, batch_size)
            if source_is_str and (not recursive or maxdepth is not None):
                # A non-recursive copy does not copy directories.
                rpaths = [p for p, i in zip(rpaths, infos, strict=True) if i["type"] == "file"]
                infos = [i for i in infos if i["type"] == "file"]
                if not rpaths:
                    return
            lpath = make_path_posix(lpath)
            dest_is_dir = trailing_sep(lpath) or os.path.isdir(lpath)
            exists = source_is_str and (
                (has_magic(rpath) and len(rpaths) == 1)
                or (not has_magic(rpath) and dest_is_dir and source_not_trailing_sep)
            )
            lpaths = other_paths(rpaths, lpath, exists=exists, flatten=not source_is_str)
            _contained(lpath, lpaths)
        targets: list[tuple[dict[str, Any], str]] = []
        for info, local in zip(infos, lpaths, strict=True):
            if info["type"] == "directory":
                await asyncio.to_thread(os.makedirs, local, exist_ok=True)
            elif await asyncio.to_thread(os.path.isdir, local):
                # A file at the top level into an existing directory (fsspec maps a name with no
                # "/" onto the directory itself): it goes inside, as with cp.
                targets.append((info, os.path.join(local, info["name"].rsplit("/", 1)[-1])))
            else:
                targets.append((info, local))
        callback.set_size(len(targets))
        if targets:
            await self._download_into_place(targets, batch_size, callback)

    async def _infos(self, paths: list[str], batch_size: int | None) -> list[dict[str, Any]]:
        """``_info`` of many paths, a bounded number at a time (most come from the dircache)."""
        limit = asyncio.Semaphore(
            batch_size or self.batch_size or self._config.transfer.concurrency
        )

        async def one(path: str) -> dict[str, Any]:
            async with limit:
                return await self._info(path)

        return list(await asyncio.gather(*(one(p) for p in paths)))

    async def _download_into_place(
        self,
        targets: list[tuple[dict[str, Any], str]],
        batch_size: int | None,
        callback: Any,
    ) -> None:
        for _, local in targets:
            await asyncio.to_thread(os.makedirs, os.path.dirname(local) or ".", exist_ok=True)
        root = os.path.commonpath([os.path.dirname(os.path.abspath(lp)) for _, lp in targets])
        staging = await asyncio.to_thread(tempfile.mkdtemp, prefix=".labric-get-", dir=root)
        # download_many lays files out by their platform paths and refuses two files (or one
        # file twice) at one path, so such targets go in separate rounds.
        rounds: list[list[tuple[dict[str, Any], str]]] = []
        for target in targets:
            key = target[0]["original_path"] or target[0]["file_id"]
            for batch in rounds:
                if all((t[0]["original_path"] or t[0]["file_id"]) != key for t in batch):
                    batch.append(target)
                    break
            else:
                rounds.append([target])
        errors: list[BaseException] = []
        done = 0
        client = await self._labric()
        try:
            for batch in rounds:
                before = done

                def progress(event: TransferProgress, before: int = before) -> None:
                    callback.absolute_update(before + event.files_done)

                outcomes = await client.files.download_many(
                    [info["file_id"] for info, _ in batch],
                    staging,
                    concurrency=batch_size or self.batch_size,
                    overwrite=True,
                    on_progress=progress,
                )
                done += len(batch)
                for (info, local), outcome in zip(batch, outcomes, strict=True):
                    if outcome.ok and outcome.path is not None:
                        await asyncio.to_thread(_move_into_place, os.fspath(outcome.path), local)
                    elif isinstance(outcome.error, NotFoundError):
                        errors.append(_not_found(info["name"], outcome.error))
                    elif outcome.error is not None:
                        errors.append(outcome.error)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        _raise_first(errors, len(targets))

    # -- writing ----------------------------------------------------------------------------------

    async def _upload(self, source: Any, path: str, **options: Any) -> None:
        client = await self._labric()
        await client.files.upload(source, name=path, **options)
        self.invalidate_cache(path)

    async def _pipe_file(
        self,
        path: str,
        value: bytes,
        mode: str = "overwrite",
        instrument_id: str | None = None,
        job_execution_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        path = _writable(self._strip_protocol(path))
        if mode == "create" and await self._exists(path, refresh=True):
            raise FileExistsError(errno.EEXIST, "A file already exists at this path", path)
        await self._upload(
            bytes(value), path, instrument_id=instrument_id, job_execution_id=job_execution_id
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
        rpath = _writable(self._strip_protocol(rpath))
        if mode == "create" and await self._exists(rpath, refresh=True):
            raise FileExistsError(errno.EEXIST, "A file already exists at this path", rpath)
        await self._upload(
            lpath,
            rpath,
            instrument_id=instrument_id,
            job_execution_id=job_execution_id,
            on_progress=_bytes_to(callback),
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
        """Upload files, concurrently, through the engine's ``upload_many``.

        Paths are expanded and mapped to platform paths exactly as fsspec's own ``put`` does;
        all the files of one call are recorded under one job execution (unless
        ``instrument_id`` or ``job_execution_id`` says otherwise).
        """
        if isinstance(lpath, list) and isinstance(rpath, list):
            lpaths, rpaths = list(lpath), [self._strip_protocol(p) for p in rpath]
        else:
            source_is_str = isinstance(lpath, str)
            if source_is_str:
                lpath = make_path_posix(lpath)
            local = LocalFileSystem()
            lpaths = local.expand_path(lpath, recursive=recursive, maxdepth=maxdepth)
            if source_is_str and (not recursive or maxdepth is not None):
                lpaths = [p for p in lpaths if not (trailing_sep(p) or local.isdir(p))]
                if not lpaths:
                    return
            dest_is_dir = isinstance(rpath, str) and (
                trailing_sep(rpath) or await self._isdir(rpath)
            )
            rpath = self._strip_protocol(rpath)
            exists = source_is_str and (
                (has_magic(lpath) and len(lpaths) == 1)
                or (not has_magic(lpath) and dest_is_dir and not trailing_sep(lpath))
            )
            rpaths = other_paths(lpaths, rpath, exists=exists, flatten=not source_is_str)
        pairs = [
            (lp, _writable(self._strip_protocol(rp)))
            for lp, rp in zip(lpaths, rpaths, strict=True)
            if not os.path.isdir(lp)
        ]
        if mode == "create":
            self.invalidate_cache()
            taken = [rp for _, rp in pairs if await self._exists(rp)]
            if taken:
                raise FileExistsError(errno.EEXIST, "A file already exists at this path", taken[0])
        callback.set_size(len(pairs))
        if not pairs:
            return
        client = await self._labric()
        try:
            outcomes = await client.files.upload_many(
                [(rp, Path(lp)) for lp, rp in pairs],
                concurrency=batch_size or self.batch_size,
                instrument_id=instrument_id,
                job_execution_id=job_execution_id,
                on_progress=lambda event: callback.absolute_update(event.files_done),
            )
        finally:
            for _, rp in pairs:
                self.invalidate_cache(rp)
        _raise_first([o.error for o in outcomes if o.error is not None], len(pairs))

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
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        ids: list[str] = []
        by_path: dict[str, list[str]] = {}
        for p in paths:
            file_id = _id_of(p)
            if file_id is not None:
                ids.append((await self._by_id(p, file_id)).file_id)
            else:
                by_path[p] = []
        if by_path:
            # One listing of what the paths share serves all of them.
            # A string prefix, not a path one: the server matches substrings of paths.
            shared = os.path.commonprefix(list(by_path))  # noqa: RUF071
            for f in await self._listing(shared):
                at = _fs_path(f)
                if at in by_path:
                    by_path[at].append(f.file_id)
        for p, found in by_path.items():
            if found:
                ids.extend(found)
            elif recursive:
                continue  # a directory of the expansion: it goes with its files
            elif await self._isdir(p, refresh=True):
                raise IsADirectoryError(
                    errno.EISDIR, "A directory: pass recursive=True to delete what it holds", p
                )
            else:
                raise _not_found(p)
        client = await self._labric()
        limit = asyncio.Semaphore(
            batch_size or self.batch_size or self._config.transfer.concurrency
        )

        async def delete(file_id: str) -> None:
            async with limit:
                with contextlib.suppress(NotFoundError):  # already gone is what was asked
                    await client.files.delete(file_id)

        try:
            await asyncio.gather(*(delete(i) for i in dict.fromkeys(ids)))
        finally:
            for p in paths:
                self.invalidate_cache(p)

    async def _isdir(self, path: str, refresh: bool = False) -> bool:
        try:
            info = await self._info(path, refresh=refresh)
        except FileNotFoundError:
            return False
        return bool(info["type"] == "directory")

    async def _exists(self, path: str, refresh: bool = False, **kwargs: Any) -> bool:
        try:
            await self._info(path, refresh=refresh)
        except FileNotFoundError:
            return False
        return True

    # -- identity --------------------------------------------------------------------------------

    def ukey(self, path: str) -> str:
        """A key that changes when the file at ``path`` does: its id and CRC32C."""
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, "A directory, not a file", info["name"])
        return f"{info['file_id']}:{info['crc32c'] or ''}"

    def checksum(self, path: str) -> int:
        """The file's CRC32C as an integer (from the platform, no download)."""
        info = self.info(path)
        if info.get("crc32c"):
            return crc32c_from_b64(info["crc32c"])
        return int(super().checksum(path))

    def modified(self, path: str) -> Any:
        """When the file at ``path`` was created on the platform (files never change in place)."""
        info = self.info(path)
        if info["type"] != "file" or info.get("created") is None:
            raise IsADirectoryError(errno.EISDIR, "No time recorded for this path", info["name"])
        return info["created"]


def _bytes_to(callback: Any) -> Callable[[TransferProgress], None]:
    """An ``on_progress`` that reports one file's bytes to an fsspec callback."""

    def report(event: TransferProgress) -> None:
        if event.bytes_total is not None:
            callback.set_size(event.bytes_total)
        callback.absolute_update(event.bytes_done)

    return report


def _raise_first(errors: list[BaseException], total: int) -> None:
    if not errors:
        return
    first = errors[0]
    if len(errors) > 1:
        first.add_note(f"{len(errors)} of {total} files failed; this is the first.")
    raise first


# -- open files ------------------------------------------------------------------------------


class LabricFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec ships no type hints
    """A file of :class:`LabricFileSystem`, opened ``rb``, ``wb`` or ``xb``.

    Reading fetches blocks with ``Range`` requests (fsspec's read-ahead cache decides their size,
    ``block_size``, 5 MiB by default); every read is pinned to the version of the file first
    read. Writing spools to a temporary file and uploads it on ``close()`` (or ``commit()``
    inside a transaction): the file appears on the platform whole or not at all.
    """

    def __init__(self, fs: LabricFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
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
            _writable(path)
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
        fs: LabricFileSystem,
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

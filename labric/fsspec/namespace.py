"""What exists under ``labric://``: the clients, paths, listings and file metadata.

:class:`LabricNamespace` is the half of :class:`~labric.fsspec.LabricFileSystem` that never
moves file content: it owns the clients (one per event loop, see :mod:`~labric.fsspec.clients`),
resolves paths to platform files through listings of ``GET /v1/files`` narrowed by the path and
matched exactly here (the newest file at a path wins), keeps complete listings in fsspec's
``dircache`` (see :mod:`~labric.fsspec.listings`), and answers ``info``, ``ls``, ``find``,
``exists``, ``ukey``, ``checksum`` and ``modified``. Reading, writing and deleting build on it
in :mod:`~labric.fsspec.filesystem`.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any, Self

from fsspec.asyn import AsyncFileSystem, get_loop, sync
from fsspec.spec import make_instance

from labric._client import AsyncLabric
from labric._core.config import ClientConfig
from labric._transfer.checksum import crc32c_from_b64
from labric.errors import NotFoundError, UsageError
from labric.fsspec import listings
from labric.fsspec.clients import ClientPool
from labric.fsspec.paths import (
    ID_DIR,
    dir_entry,
    entries,
    file_entry,
    fs_path,
    id_of,
    not_found,
    tree,
)
from labric.models.files import FileInfo

__all__ = ["LabricNamespace"]

#: Files per page when looking up one path: the newest file at a path usually comes first.
_LOOKUP_PAGE = 10
#: Files per page of a listing (``ls``, ``find``, ``glob``): the local server's largest page,
#: so 100,000 files are 100 requests (the pager fetches one page ahead of the caller); a server
#: with a lower cap answers with its own size.
LISTING_PAGE = 1000

#: Constructor arguments a pickle leaves out: they belong to the process that made it.
_UNPICKLED = ("loop", "asynchronous")


class LabricNamespace(AsyncFileSystem):  # type: ignore[misc]  # fsspec ships no type hints
    """Clients, paths, listings and metadata of ``labric://``; no file content.

    Takes the arguments of :class:`~labric.fsspec.LabricFileSystem`, which documents them.
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
        keep_versions: bool = False,
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
        #: Writes to an existing path add a file and keep the older ones (else they replace).
        self.keep_versions = keep_versions
        self._pool = ClientPool(self._config, client_options)

    def __repr__(self) -> str:
        config = self._config
        return f"<{type(self).__name__} base_url={config.base_url!r} key={config.key_prefix!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        options = {k: v for k, v in self.storage_options.items() if k not in _UNPICKLED}
        return make_instance, (type(self), self.storage_args, options)

    # -- clients, one per event loop -------------------------------------------------------------

    @property
    def _clients(self) -> dict[asyncio.AbstractEventLoop, AsyncLabric]:
        """The open clients, by the loop each belongs to."""
        return self._pool.clients

    async def _labric(self) -> AsyncLabric:
        """The client of the running loop, opened on first use (and again after a close)."""
        return await self._pool.client()

    async def aclose(self) -> None:
        """Close every client this filesystem opened; it opens a new one if used again.

        Each client's session is closed in its own loop (or dropped, when that loop is gone).
        """
        await self._pool.aclose()

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
        if not self._pool.clients:
            return
        io_loop = self._loop
        if io_loop is not None and io_loop.is_running():
            sync(io_loop, self.aclose)
        else:
            asyncio.run(self.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
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
            listings.forget(self.dircache, path, self._parent)
        super().invalidate_cache(path)

    # -- listings ------------------------------------------------------------------------------

    async def _listing(self, contains: str) -> list[FileInfo]:
        """Every file whose path contains ``contains`` (any case; the server's filter), newest
        first. Callers match exactly; the filter only spares listing the whole organisation."""
        client = await self._labric()
        listed = client.files.list(query=contains or None, page_size=LISTING_PAGE)
        return [f async for f in listed]

    async def _by_id(self, path: str, file_id: str) -> FileInfo:
        client = await self._labric()
        try:
            return await client.files.get(file_id)
        except NotFoundError as exc:
            raise not_found(path, exc) from exc

    async def _lookup(self, path: str) -> FileInfo | bool:
        """What is at ``path`` now: its newest file, else whether a file lies under it.

        Newest first, a page at a time, stopping at the first file at exactly ``path``: a file
        is usually on the first small page, so this is the cheap question asked before every
        read. A directory is only known once no file at ``path`` itself turned up.
        """
        client = await self._labric()
        newest = client.files.list(query=path, limit=_LOOKUP_PAGE, page_size=_LOOKUP_PAGE)
        files: list[FileInfo] = [f async for f in newest]
        if len(files) == _LOOKUP_PAGE and not any(fs_path(f) == path for f in files):
            files = await self._listing(path)  # a directory, or many similar paths: all of them
        under = False
        for f in files:
            candidate = fs_path(f)
            if candidate == path:
                return f
            if candidate is not None and candidate.startswith(path + "/"):
                under = True
        return under

    async def _info(self, path: str, refresh: bool = False, **kwargs: Any) -> dict[str, Any]:
        """The entry at ``path``; a file is always the one the platform holds now.

        A directory may come from a cached listing; a file entry never does: whatever a listing
        says about a file, the newest file at its path is looked up again, since another client
        may have replaced or deleted it, and a stale entry would read the old file by its id.
        """
        path = self._strip_protocol(path)
        if not path:
            return dir_entry("")
        file_id = id_of(path)
        if file_id is not None:
            return file_entry(path, await self._by_id(path, file_id))
        if path == ID_DIR:
            raise not_found(path)
        cached = None if refresh else listings.cached_entry(self.dircache, path, self._parent(path))
        if cached is not None and cached["type"] == "directory":
            return cached
        found = await self._lookup(path)
        if isinstance(found, FileInfo):
            entry = file_entry(path, found)
            if cached is not None and cached.get("file_id") != found.file_id:
                self.invalidate_cache(path)  # replaced: the listings that show it are stale
            return entry
        if cached is not None:
            self.invalidate_cache(path)  # deleted by someone else
        if found:
            return dir_entry(path)
        raise not_found(path)

    async def _ls(
        self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any
    ) -> list[Any]:
        path = self._strip_protocol(path)
        if path == ID_DIR or id_of(path) is not None:
            listed = [await self._info(path)]  # a file by id; the .id directory is not listed
        else:
            cached = None if refresh else self.dircache.get(path)
            if cached is not None:
                listed = [dict(e) for e in cached]
            else:
                files = await self._listing(f"{path}/" if path else "")
                children = tree(path, files).get(path)
                if children:
                    listed = entries(children)
                    self.dircache[path] = [dict(e) for e in listed]
                elif path:
                    listed = [await self._info(path, refresh=True)]  # a file, or not found
                else:
                    listed = []  # an empty organisation
        return listed if detail else [e["name"] for e in listed]

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
        if path == ID_DIR or id_of(path) is not None:
            one = {path: await self._info(path)}
            return one if detail else list(one)
        base = f"{path}/" if path else ""
        files = await self._listing(base + prefix)
        if prefix:
            files = [f for f in files if (fs_path(f) or "").startswith(base + prefix)]
        out = listings.cache_tree(
            self.dircache, files, path, prefix=prefix, maxdepth=maxdepth, withdirs=withdirs
        )
        if not out and path:
            try:
                info = await self._info(path, refresh=True)
            except FileNotFoundError:
                pass
            else:
                if info["type"] == "file":
                    out[path] = info
        names = sorted(out)
        return {name: out[name] for name in names} if detail else names

    async def _infos(self, paths: list[str], batch_size: int | None) -> list[dict[str, Any]]:
        """``_info`` of many paths: files from one fresh listing of what they share, the rest
        (directories, ``.id/`` paths) one by one, a bounded number at a time."""
        known: dict[str, dict[str, Any]] = {}
        plain = [p for p in paths if p and p != ID_DIR and not p.startswith(ID_DIR + "/")]
        if len(plain) > 1:
            wanted = set(plain)
            # A string prefix, not a path one: the server matches substrings of paths.
            for f in await self._listing(os.path.commonprefix(plain)):  # noqa: RUF071
                at = fs_path(f)
                if at in wanted and at not in known:
                    known[at] = file_entry(at, f)  # newest first: the first one wins
        limit = asyncio.Semaphore(self._width(batch_size))

        async def one(path: str) -> dict[str, Any]:
            if path in known:
                return known[path]
            async with limit:
                return await self._info(path)

        return list(await asyncio.gather(*(one(p) for p in paths)))

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

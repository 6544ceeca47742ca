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
    A file's path is its platform ``original_path`` (a leading ``/`` dropped). Several files may
    share a path (an instrument uploads ``plate1.csv`` on every run): the **newest wins**, as in
    the listing's order (newest first), so ``ls``, ``info``, ``open`` and ``get`` see the latest
    upload. The older files stay reachable by id as ``labric://.id/<file_id>``. ``rm`` of a path
    deletes every file at that path, so the path is gone afterwards; ``rm`` of an ``.id/`` path
    deletes that one file. ``.id`` is a virtual directory: never listed, and a platform path
    under ``.id/`` is reachable only by its id.

Writing
    Writing to an existing path through this filesystem (``put``, ``pipe``, ``open('wb')``,
    ``cp``/``mv`` onto it) replaces it, as in an object store: once the new file is confirmed,
    the files at that path listed after it (older) are deleted, and a newer one another client
    wrote meanwhile is left alone. ``keep_versions=True`` keeps the older files instead.
    ``touch(path, truncate=False)`` leaves an existing file as it is (there is no timestamp to
    update). ``cp``/``copy`` and ``mv``/``rename`` (files, or trees with ``recursive=True``)
    copy on the server with ``files.copy``, which shares the stored bytes (a server without the
    route gets a download and upload); a move deletes its sources only once every copy exists.

Directories
    As in s3fs and gcsfs, directories are implied by ``/`` in paths: one exists exactly while a
    file lies under it, and none needs creating. ``mkdir`` and ``makedirs`` of a new path do
    nothing and do not make it appear (it appears with its first file; nothing is remembered);
    of an existing directory they raise ``FileExistsError`` unless ``exist_ok=True``, and of an
    existing file always. ``rmdir`` of an existing directory raises ``OSError`` (``ENOTEMPTY``:
    it is never empty; ``rm(path, recursive=True)`` deletes it), of a file
    ``NotADirectoryError``, and of a missing path does nothing. A path may be both a file and a
    directory (``a`` and ``a/b``); ``info`` then answers the file.

Requests
    ``ls``, ``info`` and ``find`` (hence ``glob``) are listings of ``GET /v1/files``, narrowed on
    the server by the path (its ``query`` filter) and matched exactly here; complete listings are
    kept in ``dircache`` until this filesystem writes under them, ``refresh=True`` is passed, or
    ``invalidate_cache()`` is called, so ``ls`` and ``find`` are fast but may miss what another
    client did meanwhile. Reads are never stale: ``open``, ``cat``, ``info`` and ``exists`` of a
    file ask the platform for the newest file at its path (one small newest-first listing of
    that path, usually one request) whatever the cache holds, because a platform file never
    changes in place: a replaced file is a new file with a new id, and a cached entry would go
    on reading the old one. A file replaced or deleted elsewhere drops the cached listings that
    showed it. Bulk ``get`` resolves its files from one fresh listing.

    Whole-file ``cat_file`` is verified against the file's CRC32C; a byte range
    (``start``/``end``) and every read of an ``open()``ed file is one ``Range`` request to the
    signed storage URL, pinned with ``If-Match`` to the version first read, so a file replaced
    underneath an open handle fails instead of mixing versions. ``get`` and ``put`` go through
    the transfer engine's ``download_many`` and ``upload_many``: concurrent, checksummed, atomic
    on disk, and resumable. ``ukey`` and ``checksum`` come from the CRC32C the platform records.

Event loops and lifecycle
    fsspec runs a blocking filesystem's coroutines on its own IO-loop thread, and an
    ``asynchronous=True`` one on the caller's loop. An :class:`~labric.AsyncLabric` (and its
    aiohttp session) belongs to one loop, so the filesystem keeps one client per loop it is used
    on, created there on first use. :meth:`LabricFileSystem.close` (or ``with fs:``) and
    :meth:`LabricFileSystem.aclose` (or ``async with fs:``) close them; a closed filesystem opens
    a new client when used again, because fsspec caches instances by their arguments and hands
    the same one to every later ``fsspec.filesystem(...)`` and ``pandas.read_csv(...)`` call.
    Engines such as pandas and Dask never close the filesystems they create, so this package keeps
    a registry of open filesystems and, at interpreter exit, closes their clients with the public
    ``aclose()``: on fsspec's IO loop, still running then (its thread is a daemon), or, for a
    loop that has ended, from a loop of its own, which detaches the session. There is no
    ``__del__`` or finalizer poking at aiohttp's internals. On an ``asynchronous=True``
    filesystem, ``await fs.open_async(path)`` opens a file for reading without blocking.

Modules
    ``filesystem`` holds :class:`LabricFileSystem`, the coordinator, over ``namespace`` (clients,
    paths, listings, metadata); ``paths`` maps platform files to paths, entries and implied
    directories; ``listings`` is the listings cache; ``reading`` does ranged, version-pinned
    reads; ``writing`` does ``pipe``/``put``; ``versions`` replaces older files after a write;
    ``copying`` does server-side ``cp``/``mv``; ``deleting`` resolves and deletes for ``rm``;
    ``directories`` holds the ``mkdir``/``rmdir`` checks; ``transfers`` holds the path mapping
    and engine calls of bulk ``get``/``put``/``rm``; ``clients`` keeps one client per event
    loop and closes them; ``files`` holds the open-file classes.

Pickling
    A filesystem pickles as its constructor arguments (no client, no session, no loop), so a
    Dask worker rebuilds it and opens its own client. ``loop`` and ``asynchronous`` are left out:
    a rebuilt filesystem is a blocking one, as a worker has no caller's loop to join. With
    ``api_key`` omitted, the worker reads its own ``LABRIC_API_KEY``; pass ``api_key`` (for
    instance in ``storage_options``) when workers run elsewhere.
"""

from __future__ import annotations

try:
    import fsspec  # noqa: F401  # only to fail early, with the way out, when it is missing
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "labric.fsspec needs fsspec, an optional dependency: pip install 'labric[fsspec]'"
    ) from exc

from labric.fsspec.files import LabricAsyncFile, LabricFile
from labric.fsspec.filesystem import LabricFileSystem
from labric.fsspec.paths import ID_DIR

__all__ = ["ID_DIR", "LabricAsyncFile", "LabricFile", "LabricFileSystem"]

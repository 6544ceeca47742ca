"""``cat_ranges``: many byte ranges of many files, each file resolved once, ranges concurrently.

fsspec's own ``cat_ranges`` calls ``cat_file`` per range, which here would cost three requests a
range (the newest file at the path, its signed URL, the range). Engines that read columnar
formats (pyarrow, zarr, kerchunk) ask for many small ranges of a few files at once, so this
resolves each distinct path once (one fresh listing of what the paths share, then one signed
URL per file) and sends every range as one ``Range`` request, at most ``batch_size`` (default:
the transfer concurrency) in flight at a time. Ranges of one file need no ``If-Match``: a signed
URL names one platform file, and a platform file never changes in place.

Errors are per range, as fsspec returns them (``on_error="return"``: the exception in that
range's place; otherwise the first one is raised): a missing path fails its ranges, not the
others. A signed URL that expired meanwhile (403) is renewed once, for all of its file's ranges.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable
from typing import Any

from labric.errors import NotFoundError, PermissionDeniedError, TransferError
from labric.fsspec.namespace import LabricNamespace
from labric.fsspec.paths import byte_range, not_found
from labric.fsspec.reading import read_range
from labric.models.files import FileContent

__all__ = ["cat_ranges"]


class _Target:
    """One distinct path: its entry and signed URL, or why it cannot be read."""

    def __init__(self, info: dict[str, Any] | None) -> None:
        self.info = info
        self.content: FileContent | None = None
        self.error: BaseException | None = None
        self.renewing: asyncio.Task[FileContent] | None = None

    @property
    def size(self) -> int:
        assert self.info is not None
        assert self.content is not None
        size = self.content.size_bytes
        if size is None:
            size = self.info["size"]
        if size is None:
            raise TransferError(f"The server does not say how large {self.info['name']} is")
        return int(size)


async def cat_ranges(
    fs: LabricNamespace,
    paths: list[Any],
    starts: Any,
    ends: Any,
    *,
    batch_size: int | None,
    on_error: str,
) -> list[Any]:
    """The bytes of ``[start, end)`` of each path (fsspec's ``_cat_ranges``)."""
    if not isinstance(paths, list):
        raise TypeError("paths must be a list")
    starts = list(starts) if isinstance(starts, Iterable) else [starts] * len(paths)
    ends = list(ends) if isinstance(ends, Iterable) else [ends] * len(paths)
    if len(starts) != len(paths) or len(ends) != len(paths):
        raise ValueError("paths, starts and ends must have the same length")
    stripped: list[str] = [fs._strip_protocol(p) for p in paths]
    limit = asyncio.Semaphore(fs._width(batch_size))
    targets = await _resolve(fs, list(dict.fromkeys(stripped)), batch_size, limit)
    client = await fs._labric()

    async def one(path: str, start: int | None, end: int | None) -> bytes:
        target = targets[path]
        if target.error is not None:
            raise target.error
        begin, stop = byte_range(start, end, target.size)
        for attempt in range(2):
            content = target.content
            assert content is not None
            try:
                async with limit:
                    data, _ = await read_range(client, content, begin, stop, etag=None)
                return data
            except PermissionDeniedError:
                if attempt:
                    raise
                await _renew(fs, target, content)
        raise AssertionError("unreachable")  # pragma: no cover

    out: list[Any] = list(
        await asyncio.gather(
            *(one(p, s, e) for p, s, e in zip(stripped, starts, ends, strict=True)),
            return_exceptions=True,
        )
    )
    for result in out:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation and the like are never a range's result
    if on_error != "return":
        failed = next((r for r in out if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
    return out


async def _resolve(
    fs: LabricNamespace, paths: list[str], batch_size: int | None, limit: asyncio.Semaphore
) -> dict[str, _Target]:
    """Each path's newest file and signed URL, a bounded number at a time."""
    try:
        # One fresh listing of what the paths share answers most of them.
        infos: list[dict[str, Any] | None] = list(await fs._infos(paths, batch_size))
    except Exception:
        infos = [None] * len(paths)  # one of them is missing: resolve each on its own
    targets = {p: _Target(info) for p, info in zip(paths, infos, strict=True)}

    async def resolve(path: str, target: _Target) -> None:
        async with limit:
            try:
                if target.info is None:
                    target.info = await fs._info(path)
                if target.info["type"] != "file":
                    raise IsADirectoryError(errno.EISDIR, "A directory, not a file", path)
                target.content = await _content_of(fs, target.info)
            except Exception as exc:
                target.error = exc

    await asyncio.gather(*(resolve(p, t) for p, t in targets.items()))
    return targets


async def _content_of(fs: LabricNamespace, info: dict[str, Any]) -> FileContent:
    """The signed URL (and size) of a listed file."""
    client = await fs._labric()
    try:
        return await client.files.content(info["file_id"])
    except NotFoundError as exc:
        raise not_found(info["name"], exc) from exc


async def _renew(fs: LabricNamespace, target: _Target, expired: FileContent) -> None:
    """A fresh signed URL for ``target``, asked for once however many of its ranges saw 403."""
    if target.content is not expired:
        return  # another range renewed it already
    if target.renewing is None:
        assert target.info is not None
        target.renewing = asyncio.ensure_future(_content_of(fs, target.info))
    renewing = target.renewing
    try:
        target.content = await asyncio.shield(renewing)
    finally:
        if target.renewing is renewing and renewing.done():
            target.renewing = None

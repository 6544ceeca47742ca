"""Ranged reads of a file's stored object: one ``Range`` request each, pinned to one version.

A byte range of ``cat_file`` and every read of an open file is one ``GET`` of the signed storage
URL with ``Range: bytes=a-b``. The first read records the object's ETag; later reads send it as
``If-Match``, so a file replaced underneath an open handle fails with
:class:`~labric.errors.IntegrityError` (the storage answers 412) instead of mixing versions. A
signed URL that expired while the file was open (403) is renewed once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from labric._client import AsyncLabric
from labric.errors import APIStatusError, IntegrityError, PermissionDeniedError, TransferError
from labric.models.files import FileContent

__all__ = ["PinnedFile", "read_open", "read_range"]


class PinnedFile(Protocol):
    """What :func:`read_open` needs of an open file (the classes of :mod:`.files`): its signed
    URL (``None`` until asked for, or once expired), the ETag it is pinned to, and its size.

    A protocol rather than the classes themselves, which call back into the filesystem that
    calls this module: naming them here would tie the three modules into an import cycle.
    """

    _content: FileContent | None
    _etag: str | None
    size: Any


async def read_range(
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
    # whole files; this package is part of the SDK and shares the client's one session.
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


async def read_open(
    client: AsyncLabric,
    file: PinnedFile,
    start: int,
    end: int,
    content_of: Callable[[], Awaitable[FileContent]],
) -> bytes:
    """One read of an open file: a range request with the file's URL, pinned to its ETag.

    ``content_of`` asks the platform for a (fresh) signed URL of the file.
    """
    for attempt in range(2):
        if file._content is None:
            file._content = await content_of()
        try:
            data, tag = await read_range(
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

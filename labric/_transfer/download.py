"""Downloads: one file to one path, verified before it appears under its name.

:class:`Downloader` coordinates one file's download; the machinery it drives lives beside it:

- :mod:`labric._transfer.tempfiles`: bytes go to a temporary file created exclusively under a
  random name next to the final path (the journal records the name, so a rerun finds it again)
  and are moved to the final name only after they were verified and fsynced: a partial file never
  appears under the final name, and no existing file is ever written to. Without ``overwrite``
  the move fails when the final name appeared meanwhile, never replacing it.
- :mod:`labric._transfer.ranges`: large objects are fetched as concurrent ranges pinned to one
  ETag with ``If-Match``; every ``206`` must carry exactly the range asked for, or nothing of it
  is written. Response bodies are written with ``pwritev`` in a worker thread while the next
  batch is received, the CRC32C chained over them in order.

Sizes are claims, checked before they cost anything: a body is read only up to the declared size
(one byte more fails the file at once), a short one fails at its end, and disk is preallocated
only for a size the storage server confirmed (the total of a ``206``'s ``Content-Range``).

An object without an ETag is fetched as one stream instead of ranges. A changed object (412, or
another ETag) restarts the download from scratch, with its checksum asked for afresh, instead of
mixing versions. A ranged download interrupted by the network or by cancellation keeps its
temporary file and journal and resumes; any other failure removes the temporary file.

Verification: the CRC32C of ``GET /v1/files/{id}/content``, else of the file's metadata, else the
storage server's ``x-goog-hash`` (a whole-object stream is checked against it in any case). When
none is given the size is still checked and the download is reported unverified
(:attr:`Downloaded.unverified`, a warning, a log record) instead of claiming a verification it
did not do.

:meth:`Downloader.read_bytes` fetches a whole file into memory instead, verified the same way,
never reading past its stated size nor past a bound (``max_bytes``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from labric._transfer.checksum import crc32c_extend, crc32c_from_b64, crc32c_to_b64
from labric._transfer.context import TransferContext, _fpath, _goog_crc, _json_object, _model
from labric._transfer.journal import journal_key
from labric._transfer.naming import destination_path, open_parent
from labric._transfer.progress import _Progress
from labric._transfer.ranges import _NoETag, _ObjectChanged, download_ranges, receive
from labric._transfer.tempfiles import (
    _crc_at,
    _finalize,
    _lexists,
    _to_thread_to_end,
    forget_temporary,
    open_temporary,
    release_temporary,
)
from labric.errors import APIError, APIStatusError, IntegrityError, TransferError
from labric.models.files import FileContent
from labric.models.transfers import TransferPhase

__all__ = ["DEFAULT_READ_LIMIT", "Downloaded", "Downloader"]

logger = logging.getLogger("labric")


#: The most bytes :meth:`Downloader.read_bytes` holds in memory unless told otherwise.
DEFAULT_READ_LIMIT = 256 * 1024 * 1024


@attrs.frozen(kw_only=True)
class Downloaded:
    """Where one download landed, and how far its bytes could be trusted.

    Attributes:
        path: The final path.
        skipped: An identical file was already there (``skip_existing``).
        unverified: Nothing gave a checksum: only the size could be checked.
        warnings: What a caller should know about a download that still succeeded.
    """

    path: Path
    skipped: bool = False
    unverified: bool = False
    warnings: tuple[str, ...] = ()


class Downloader:
    """A client's downloads, one file per call (calls run concurrently).

    Args:
        context: The engine's shared transport, settings and state.
    """

    def __init__(self, context: TransferContext) -> None:
        self._ctx = context

    async def _metadata(self, file_id: str) -> dict[str, Any]:
        """The file's metadata (``GET /v1/files/{id}``), or ``{}`` where not served."""
        try:
            response = await self._ctx.api("GET", _fpath(file_id))
        except APIStatusError as exc:
            if exc.status_code in (404, 405):
                return {}  # the content request that follows reports a missing file
            raise
        return _json_object(response)

    async def content(self, file_id: str) -> FileContent:
        return _model(await self._ctx.api("GET", _fpath(file_id, "/content")), FileContent)

    async def _expected_crc(self, info: FileContent, meta: dict[str, Any] | None) -> int | None:
        """The CRC32C the bytes must have: from ``content``, else from the metadata (``meta``, or
        fetched when not given)."""
        text = info.crc32c_hash
        if text is None:
            if meta is None:
                meta = await self._metadata(info.file_id)
            value = meta.get("crc32c_hash")
            text = value if isinstance(value, str) and value else None
        if text is None:
            return None
        try:
            return crc32c_from_b64(text)
        except ValueError:
            raise IntegrityError(
                f"File {info.file_id} has a malformed CRC32C {text!r}; its bytes cannot be checked"
            ) from None

    async def download(
        self,
        file_id: str,
        dest: Path,
        *,
        overwrite: bool,
        progress: _Progress,
        skip_existing: bool = False,
        claimed: set[Path] | None = None,
    ) -> Downloaded:
        """Download one file to ``dest`` (a file path, or a directory to put it in).

        With ``claimed`` (bulk downloads), ``dest`` is a directory and the file keeps its platform
        path under it; the final path is claimed in that set before any byte is written, so two
        files that map to one path never write over each other.
        """
        meta = await self._metadata(file_id) if claimed is not None else None
        original = meta.get("original_path") if meta is not None else None
        info = await self.content(file_id)
        final, root, parts = destination_path(
            dest,
            file_id=file_id,
            file_name=info.file_name,
            original_path=original if isinstance(original, str) and original else None,
            claimed=claimed,
        )
        expected = await self._expected_crc(info, meta)
        total = info.size_bytes
        progress.started_file(file_id, total)
        # Opened on the loop, not in a thread: a cancellation must never lose the descriptor.
        dir_fd = open_parent(root, parts, file_id=file_id)
        try:
            name = parts[-1]
            if _lexists(dir_fd, name):
                if skip_existing and expected is not None:
                    local = await _to_thread_to_end(_crc_at, dir_fd, name)
                    if local == expected:
                        # A run killed just as this file was moved into place may have left
                        # its temporary file behind.
                        await forget_temporary(self._ctx, self._key(file_id, final), dir_fd)
                        progress.total_done += total or 0
                        progress.finished_file(TransferPhase.SKIPPED, file_id, total or 0, total)
                        return Downloaded(path=final, skipped=True)
                if not overwrite:
                    raise FileExistsError(
                        f"{final} already exists; pass overwrite=True to replace it"
                    )
            for attempt in range(3):
                try:
                    verified = await self._download_to(
                        info, expected, final, dir_fd, name, overwrite, progress
                    )
                    break
                except _ObjectChanged:
                    if attempt == 2:
                        raise IntegrityError(
                            f"File {file_id} kept changing on the server during the download"
                        ) from None
                    info = await self.content(file_id)
                    # A new version: its checksum, asked for afresh (never the old metadata's).
                    expected = await self._expected_crc(info, None)
        finally:
            os.close(dir_fd)
        progress.finished_file(TransferPhase.COMPLETED, file_id, total or 0, total)
        if verified:
            return Downloaded(path=final)
        warning = (
            f"File {file_id} was downloaded to {final} unverified: neither the API nor storage "
            "gave a checksum, so only its size was checked"
        )
        logger.warning("%s", warning)
        return Downloaded(path=final, unverified=True, warnings=(warning,))

    async def _download_to(
        self,
        info: FileContent,
        expected: int | None,
        final: Path,
        dir_fd: int,
        name: str,
        overwrite: bool,
        progress: _Progress,
    ) -> bool:
        """Download into a temporary file and move it to ``name``; whether it was verified."""
        size = info.size_bytes
        key = self._key(info.file_id, final)
        ranged = size is not None and size >= self._ctx.config.multipart_threshold
        temp = await open_temporary(self._ctx, info, key, dir_fd, name, ranged)
        keep = False
        try:
            storage_crc: int | None = None
            if ranged:
                assert size is not None
                try:
                    # Storage states the whole object's x-goog-hash on a 206 too: when it
                    # disagrees with the bytes, the object is not the one the API recorded.
                    crc, storage_crc = await download_ranges(self._ctx, info, size, temp, progress)
                except _NoETag:
                    # Unpinned ranges could mix two versions of the object: one stream instead.
                    await _to_thread_to_end(os.ftruncate, temp.fd, 0)
                    temp.entry.update(etag=None, ranges={})
                    crc, storage_crc = await self._download_stream(info, temp.fd, progress)
            else:
                crc, storage_crc = await self._download_stream(info, temp.fd, progress)
            if expected is not None and crc != expected:
                raise IntegrityError(
                    f"Download of {info.file_id} does not match its CRC32C "
                    f"({crc32c_to_b64(crc)} received, {crc32c_to_b64(expected)} expected)"
                )
            if storage_crc is not None and crc != storage_crc:
                raise IntegrityError(
                    f"Download of {info.file_id} does not match the storage checksum "
                    f"({crc32c_to_b64(crc)} received, {crc32c_to_b64(storage_crc)} expected)"
                )
            await _to_thread_to_end(_finalize, temp, final, name, overwrite)
            if temp.journalled:
                await self._ctx.journal.delete("download", key)
            return expected is not None or storage_crc is not None
        except (asyncio.CancelledError, APIError):
            # The network or the caller stopped it: ranges pinned to an ETag are worth keeping.
            keep = ranged and temp.journalled and bool(temp.entry.get("etag"))
            raise
        finally:
            # No await before the removal: a second cancellation cannot skip it.
            await release_temporary(self._ctx, temp, keep=keep)

    def _key(self, file_id: str, final: Path) -> str:
        """The journal key of a download of ``file_id`` to ``final``."""
        return journal_key(self._ctx.origin, self._ctx.key_prefix, file_id, os.path.abspath(final))

    async def _download_stream(
        self, info: FileContent, fd: int, progress: _Progress
    ) -> tuple[int, int | None]:
        """One ``GET`` of the whole object; its CRC32C and the storage's ``x-goog-hash``."""
        chunk = self._ctx.config.chunk_size
        size = info.size_bytes
        done = [0]

        async def once() -> tuple[int, int | None]:
            progress.total_done -= done[0]
            done[0] = 0

            async def fetch() -> tuple[int, int | None]:
                await _to_thread_to_end(os.ftruncate, fd, 0)  # a retry starts over

                def moved(n: int) -> None:
                    done[0] += n
                    progress.advance(info.file_id, n, done[0], size)

                async with (
                    self._ctx.memory.reserve(2 * chunk),
                    self._ctx.transport.stream("GET", info.download_url) as resp,
                ):
                    length = resp.content_length
                    if size is not None and length is not None and length > size:
                        raise _length_mismatch(info.file_id, length, size)
                    limit = size if size is not None else length
                    crc, _ = await receive(self._ctx, resp, fd, 0, moved, limit, info.file_id)
                    header_crc = _goog_crc(resp.headers.get("x-goog-hash"))
                if size is not None and done[0] != size:
                    raise TransferError(
                        f"Download of {info.file_id} ended at {done[0]} of {size} bytes"
                    )
                return crc, header_crc

            return await self._ctx.slot_call(fetch)

        return await self._ctx.retrying(once, method="GET", url=info.download_url)

    async def read_bytes(self, file_id: str, *, max_bytes: int = DEFAULT_READ_LIMIT) -> bytes:
        """Fetch a whole file into memory, verified against its CRC32C, at most ``max_bytes``."""
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        info = await self.content(file_id)
        size = info.size_bytes
        if size is not None and size > max_bytes:
            raise TransferError(
                f"File {file_id} is {size} bytes, over the {max_bytes} read_bytes holds in "
                "memory; download it to a file, or pass a larger max_bytes"
            )
        expected = await self._expected_crc(info, None)

        async def once() -> tuple[bytes, int | None]:
            async def fetch() -> tuple[bytes, int | None]:
                async with self._ctx.transport.stream("GET", info.download_url) as resp:
                    length = resp.content_length
                    if length is not None and size is not None and length > size:
                        raise _length_mismatch(file_id, length, size)
                    if length is not None and length > max_bytes:
                        raise TransferError(
                            f"File {file_id} is {length} bytes, over the {max_bytes} read_bytes "
                            "holds in memory; download it to a file, or pass a larger max_bytes"
                        )
                    data = bytearray()
                    async for piece in resp.content.iter_any():
                        data += piece
                        # Stop reading: a storage server that keeps sending would fill memory.
                        if size is not None and len(data) > size:
                            raise TransferError(
                                f"File {file_id} is longer than its stated {size} bytes"
                            )
                        if len(data) > max_bytes:
                            raise TransferError(
                                f"File {file_id} passed the {max_bytes} bytes read_bytes holds "
                                "in memory; download it to a file, or pass a larger max_bytes"
                            )
                    return bytes(data), _goog_crc(resp.headers.get("x-goog-hash"))

            return await self._ctx.slot_call(fetch)

        data, storage_crc = await self._ctx.retrying(once, method="GET", url=info.download_url)
        if size is not None and len(data) != size:
            raise TransferError(f"File {file_id} ended at {len(data)} of {size} bytes")
        crc = crc32c_extend(0, data)
        if expected is not None and crc != expected:
            raise IntegrityError(f"File {file_id} does not match its CRC32C")
        if storage_crc is not None and crc != storage_crc:
            raise IntegrityError(f"File {file_id} does not match the storage checksum")
        if expected is None and storage_crc is None:
            logger.warning(
                "File %s was read unverified: neither the API nor storage gave a checksum, so "
                "only its size was checked",
                file_id,
            )
        return data


def _length_mismatch(file_id: str, length: int, size: int) -> TransferError:
    # Only a longer body is refused before reading: a shorter one fails where it ends.
    return TransferError(
        f"Storage announces {length} bytes for file {file_id}, longer than its stated {size} bytes"
    )

"""Bulk transfers: many files in one call, bounded, with one outcome per input, in input order.

:func:`expand_sources` turns directories and globs into files, each named by its path relative to
the directory's parent (or the glob's fixed prefix). :meth:`BulkTransfers.run_bulk` runs the
files through a few workers (``concurrency``, by default the limiter's ceiling) and records a
failure as that file's outcome instead of stopping the others; cancellation still stops every
worker. All files of a call share one progress aggregate. With ``skip_existing``, an
upload whose name and CRC32C the server already has, or a download whose local file matches, is
skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from labric._transfer.checksum import crc32c_from_b64
from labric._transfer.context import TransferContext, _model
from labric._transfer.download import Downloader
from labric._transfer.progress import ProgressCallback, _Progress
from labric._transfer.scheduling import _gather_all
from labric._transfer.sources import _file_crc
from labric._transfer.upload import Uploader
from labric.errors import APIResponseValidationError
from labric.models.files import FileInfo, FileUpload
from labric.models.transfers import DownloadOutcome, TransferPhase, UploadOutcome

__all__ = ["BulkTransfers", "expand_sources"]

T = TypeVar("T")


class BulkTransfers:
    """A client's bulk uploads and downloads: many files per call.

    Args:
        context: The engine's shared transport, settings and state.
        uploads: Uploads one file.
        downloads: Downloads one file.
    """

    def __init__(self, context: TransferContext, uploads: Uploader, downloads: Downloader) -> None:
        self._ctx = context
        self._uploads = uploads
        self._downloads = downloads

    async def run_bulk(
        self,
        items: list[T],
        worker: Callable[[T], Awaitable[Any]],
        concurrency: int | None,
    ) -> list[Any]:
        """Run ``worker`` over ``items`` with bounded parallelism; results (or errors) in order."""
        width = max(1, min(concurrency or self._ctx.limiter.ceiling, len(items) or 1))
        results: list[Any] = [None] * len(items)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(items)):
            queue.put_nowait(index)

        async def loop() -> None:
            while True:
                try:
                    index = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    results[index] = await worker(items[index])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    results[index] = exc

        await _gather_all([loop() for _ in range(width)])
        return results

    async def upload_many(
        self,
        sources: Iterable[Any],
        *,
        concurrency: int | None,
        attribution: dict[str, str],
        on_progress: ProgressCallback | None,
        skip_existing: bool,
        content_type: str | None,
    ) -> list[UploadOutcome]:
        expanded = expand_sources(sources)
        progress = _Progress("upload", on_progress, len(expanded))
        existing: dict[str, str] = {}
        if skip_existing:
            existing = await self._existing_by_name()

        async def one(item: tuple[object, Any, str | None]) -> UploadOutcome:
            original, src, name = item
            warnings: list[str] = []
            try:
                if skip_existing:
                    skipped = await self._skip_if_present(src, name, existing, progress)
                    if skipped is not None:
                        return UploadOutcome(source=original, file=skipped, skipped=True)
                upload, was_there = await self._uploads.upload(
                    src,
                    name=name,
                    content_type=content_type,
                    attribution=attribution,
                    progress=progress,
                    warnings=warnings,
                )
                return UploadOutcome(
                    source=original, file=upload, skipped=was_there, warnings=tuple(warnings)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                label = name or (os.fspath(src) if isinstance(src, str | os.PathLike) else "?")
                with contextlib.suppress(Exception):  # the file's error is what matters here
                    progress.finished_file(TransferPhase.FAILED, str(label), 0, None)
                return UploadOutcome(source=original, error=exc, warnings=tuple(warnings))

        return await self.run_bulk(expanded, one, concurrency)

    async def _existing_by_name(self) -> dict[str, str]:
        found: dict[str, str] = {}
        url: str | None = "/v1/files"
        params: dict[str, Any] | None = {"page_size": 1000}
        followed: set[str] = set()
        while url is not None:
            response = await self._ctx.api("GET", url, params=params)
            for item in _model(response, list[FileInfo]):
                name = item.original_path or item.file_name
                if name and item.crc32c_hash:
                    found.setdefault(name, f"{item.file_id}\x1f{item.crc32c_hash}")
            url, params = response.next_url, None
            if url is not None and (url in followed or not self._ctx.transport.is_api_origin(url)):
                # As the pager does: never follow a link off the API's origin, nor loop.
                raise APIResponseValidationError(
                    "The file listing's next-page link leaves the API or repeats a page",
                    method="GET",
                    path="/v1/files",
                    request_id=response.request_id,
                )
            if url is not None:
                followed.add(url)
        return found

    async def _skip_if_present(
        self, src: Any, name: str | None, existing: dict[str, str], progress: _Progress
    ) -> FileUpload | None:
        if not isinstance(src, str | os.PathLike):
            return None
        label = name or Path(src).name
        hit = existing.get(label)
        if hit is None:
            return None
        file_id, remote = hit.split("\x1f", 1)
        local = await asyncio.to_thread(_file_crc, Path(src))
        if local != crc32c_from_b64(remote):
            return None
        size = os.path.getsize(src)
        progress.total_done += size
        progress.finished_file(TransferPhase.SKIPPED, label, size, size)
        return FileUpload(file_id=file_id, file_name=label, size_bytes=size, crc32c_hash=remote)

    async def download_many(
        self,
        file_ids: Iterable[str],
        dest_dir: Path,
        *,
        concurrency: int | None,
        on_progress: ProgressCallback | None,
        skip_existing: bool,
        overwrite: bool,
    ) -> list[DownloadOutcome]:
        ids = list(file_ids)
        progress = _Progress("download", on_progress, len(ids))
        dest_dir.mkdir(parents=True, exist_ok=True)
        claimed: set[Path] = set()

        async def one(file_id: str) -> DownloadOutcome:
            try:
                done = await self._downloads.download(
                    file_id,
                    dest_dir,
                    overwrite=overwrite,
                    progress=progress,
                    skip_existing=skip_existing,
                    claimed=claimed,
                )
                return DownloadOutcome(
                    file_id=file_id,
                    path=done.path,
                    skipped=done.skipped,
                    unverified=done.unverified,
                    warnings=done.warnings,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                progress.finished_file(TransferPhase.FAILED, file_id, 0, None)
                return DownloadOutcome(file_id=file_id, error=exc)

        return await self.run_bulk(ids, one, concurrency)


# -- expanding sources ------------------------------------------------------------------------


def expand_sources(sources: Iterable[Any]) -> list[tuple[object, Any, str | None]]:
    """Expand directories and globs into files: ``(original source, upload source, name)``.

    Files under a directory keep their path relative to the directory's parent as their name
    (``run42/plate1.csv``); glob matches keep their path relative to the glob's fixed prefix.
    ``(name, data)`` tuples name bytes or streams.
    """
    out: list[tuple[object, Any, str | None]] = []
    for src in sources:
        if isinstance(src, tuple) and len(src) == 2 and isinstance(src[0], str):
            out.append((src, src[1], src[0]))
            continue
        if isinstance(src, str | os.PathLike):
            text = os.fspath(src)
            if glob.has_magic(text):
                root = _glob_root(text)
                for match in sorted(glob.glob(text, recursive=True)):
                    if os.path.isfile(match):
                        out.append(
                            (match, match, os.path.relpath(match, root).replace(os.sep, "/"))
                        )
                continue
            if os.path.isdir(text):
                base = Path(text).resolve()
                for dirpath, dirnames, filenames in os.walk(base):
                    dirnames.sort()
                    for filename in sorted(filenames):
                        full = Path(dirpath) / filename
                        rel = full.relative_to(base.parent).as_posix()
                        out.append((str(full), full, rel))
                continue
        out.append((src, src, None))
    return out


def _glob_root(pattern: str) -> str:
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = os.path.join(*fixed) if fixed else "."
    return root if os.path.isdir(root) else os.path.dirname(root) or "."

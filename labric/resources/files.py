"""``client.files``: list, inspect, upload, download and delete instrument files."""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from labric._core.context import current_execution_id
from labric._core.pagination import AsyncPager
from labric._core.transport import Transport, path_segment
from labric._transfer.engine import TransferEngine
from labric._transfer.progress import ProgressCallback, _Progress
from labric._transfer.sources import UploadSourceType
from labric.errors import TransferError
from labric.models.files import FileContent, FileInfo, FileUpload, UploadStatus
from labric.models.transfers import DownloadOutcome, UploadOutcome
from labric.resources._base import AsyncResource


@attrs.define
class _Attribution:
    """The ids an upload call records its files under, and whether the call succeeded."""

    ids: dict[str, str] = attrs.field(factory=dict)
    succeeded: bool = False


__all__ = ["AsyncFiles"]


def _file_path(file_id: str, suffix: str = "") -> str:
    return f"/v1/files/{path_segment(file_id, 'file_id')}{suffix}"


class AsyncFiles(AsyncResource):
    """Files: the instrument files and other blobs an organisation keeps on Labric."""

    def __init__(self, transport: Transport, engine: TransferEngine) -> None:
        super().__init__(transport)
        self._engine = engine

    @asynccontextmanager
    async def _attribution(
        self, job_execution_id: str | None, instrument_id: str | None
    ) -> AsyncIterator[_Attribution]:
        """The ids uploads are recorded under; opens (and closes) an execution when none is given.

        The hosted upload routes need a job execution or an instrument. Without either (and
        outside ``jobs.track()`` or a job, see :func:`labric._core.context.current_execution_id`),
        one off-platform execution is
        opened for the call and closed ``completed``, or ``failed`` if anything failed, so the
        batch can be found and reverted as a unit.
        """
        given = _Attribution()
        if instrument_id is not None:
            given.ids["instrument_id"] = instrument_id
        execution = job_execution_id or current_execution_id()
        if execution is not None:
            given.ids["job_execution_id"] = execution
        if given.ids:
            yield given
            return
        opened = await self._engine.api("POST", "/v1/job-executions", json={})
        execution_id = self._string_field(opened, "job_execution_id")
        own = _Attribution(ids={"job_execution_id": execution_id})
        try:
            yield own
        finally:
            await self._engine.api(
                "PATCH",
                f"/v1/job-executions/{path_segment(execution_id, 'execution_id')}",
                json={"status": "completed" if own.succeeded else "failed"},
            )

    def list(
        self,
        *,
        instrument_id: str | None = None,
        extensions: Sequence[str] | str | None = None,
        query: str | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[FileInfo]:
        """List files, newest first.

        Args:
            instrument_id: Only files from this instrument.
            extensions: Only these extensions, e.g. ``["csv", "txt"]`` or ``"csv,txt"``.
            query: Space-separated terms that must all appear in the file's path (any case).
            limit: The most files to yield in total.
            page_size: Files fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every file.

        Example::

            async for f in client.files.list(extensions=["csv"], query="plate 7"):
                print(f.file_id, f.original_path)
        """
        if isinstance(extensions, str):
            ext: str | None = extensions
        elif extensions is not None:
            ext = ",".join(e.lstrip(".") for e in extensions)
        else:
            ext = None
        params = {"instrument_id": instrument_id, "extensions": ext, "query": query}
        return self._pager("/v1/files", FileInfo, params=params, limit=limit, page_size=page_size)

    async def get(self, file_id: str) -> FileInfo:
        """Get one file's metadata.

        Raises:
            NotFoundError: no such file in your organisation.
        """
        response = await self._transport.request("GET", _file_path(file_id))
        return self._parse(response, FileInfo)

    async def content(self, file_id: str) -> FileContent:
        """Get a signed download URL and a text preview of the first 64 KiB.

        Returns:
            The signed ``download_url`` (valid for a limited time; it needs no API key), the
            ``text_preview``, and ``size_bytes`` / ``crc32c_hash`` where the server knows them.
        """
        response = await self._transport.request("GET", _file_path(file_id, "/content"))
        return self._parse(response, FileContent)

    async def delete(self, file_id: str) -> None:
        """Delete a file and its bytes.

        Safe to retry: if an earlier attempt's outcome was unknown (a 5xx, a timeout, a lost
        connection) and a retry finds the file gone, that attempt deleted it and the call
        succeeds.

        Raises:
            NotFoundError: no such file in your organisation (found missing by the first
                attempt).
        """
        await self._transport.request("DELETE", _file_path(file_id))

    async def upload(
        self,
        source: UploadSourceType,
        *,
        name: str | None = None,
        content_type: str | None = None,
        instrument_id: str | None = None,
        job_execution_id: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FileUpload:
        """Upload one file, streamed (never read whole into memory), checksummed, confirmed.

        Large files go up as concurrent parts when the server offers them; an upload from a path
        that was interrupted resumes where it stopped when called again.

        Args:
            source: A path, bytes, a binary file object, or an async iterable of bytes.
            name: The file's name on the platform (default: the path's or file object's name;
                required for bytes and streams).
            content_type: Default: guessed from the name, else ``application/octet-stream``.
            instrument_id: Attach the file to an instrument (its triggers and parsers see it).
            job_execution_id: Record the file under this execution (default: the running job's,
                else a new off-platform execution opened and closed for this call).
            on_progress: Called with a :class:`~labric.models.TransferProgress` as bytes move.

        Returns:
            The confirmed file.

        Raises:
            FileNotFoundError: the path does not exist.
            ValueError: bytes or a stream without ``name``.
            IntegrityError: the server stored different bytes than were sent.
            APIError: the upload failed after retries.

        Example::

            f = await client.files.upload("runs/plate7.csv", instrument_id=reader.id)
        """
        async with self._attribution(job_execution_id, instrument_id) as attribution:
            progress = _Progress("upload", on_progress, 1)
            result, _ = await self._engine.upload(
                source,
                name=name,
                content_type=content_type,
                attribution=attribution.ids,
                progress=progress,
            )
            attribution.succeeded = True
            return result

    async def upload_many(
        self,
        sources: Iterable[Any],
        *,
        concurrency: int | None = None,
        instrument_id: str | None = None,
        job_execution_id: str | None = None,
        content_type: str | None = None,
        skip_existing: bool = False,
        raise_on_error: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> builtins.list[UploadOutcome]:
        """Upload many files concurrently; one outcome per file, in input order.

        Directories are walked (each file keeps its path relative to the directory's parent as
        its name, ``run42/plate1.csv``) and globs expanded (``"runs/**/*.csv"``); ``(name, data)``
        pairs name bytes or streams. One bad file never stops the others.

        Args:
            sources: Paths, directories, globs, or ``(name, data)`` pairs.
            concurrency: Most requests in flight (default: the client's transfer concurrency).
            instrument_id: Attach every file to this instrument.
            job_execution_id: Record every file under this execution (default: the running job's,
                else one off-platform execution for the whole call, closed at the end).
            content_type: Force one content type (default: guessed per file).
            skip_existing: Skip files whose name and CRC32C already match a file on the platform.
            raise_on_error: After all files ran, raise the first error (with the others noted).
            on_progress: Called with per-file and aggregate progress events.

        Returns:
            An :class:`~labric.models.UploadOutcome` per file (``.ok``, ``.file``, ``.error``).
        """
        async with self._attribution(job_execution_id, instrument_id) as attribution:
            outcomes = await self._engine.upload_many(
                sources,
                concurrency=concurrency,
                attribution=attribution.ids,
                on_progress=on_progress,
                skip_existing=skip_existing,
                content_type=content_type,
            )
            attribution.succeeded = all(o.ok for o in outcomes)
        if raise_on_error:
            _raise_first([o.error for o in outcomes], len(outcomes))
        return outcomes

    async def upload_status(self, file_id: str) -> UploadStatus:
        """Where an unconfirmed upload stands: the parts the server already holds."""
        response = await self._transport.request("GET", _file_path(file_id, "/upload-status"))
        return self._parse(response, UploadStatus)

    async def download(
        self,
        file_id: str,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Download a file to ``dest``, verified, atomically.

        Bytes are written to ``<dest>.part`` and renamed only once complete, fsynced and matching
        the server's CRC32C: nothing partial ever appears under the final name. Large files are
        fetched as concurrent ranges, and an interrupted large download resumes.

        Args:
            file_id: The file.
            dest: A file path, or an existing directory to put it in under its own name.
            overwrite: Replace an existing file at ``dest``.
            on_progress: Called with :class:`~labric.models.TransferProgress` events.

        Returns:
            The path written.

        Raises:
            FileExistsError: ``dest`` exists and ``overwrite`` is false.
            IntegrityError: the bytes did not match their checksum, or the file kept changing.
            APIError: the download failed after retries.
        """
        progress = _Progress("download", on_progress, 1)
        path, _ = await self._engine.download(
            file_id, Path(dest), overwrite=overwrite, progress=progress
        )
        return path

    async def download_many(
        self,
        file_ids: Iterable[str],
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int | None = None,
        overwrite: bool = False,
        skip_existing: bool = False,
        raise_on_error: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> builtins.list[DownloadOutcome]:
        """Download many files concurrently into ``dest_dir``; one outcome per id, in order.

        Each file lands at its platform path under ``dest_dir`` (a name that would leave the
        directory, such as ``../x``, fails that file and no other).

        Args:
            file_ids: The files.
            dest_dir: The directory to write into (created if missing).
            concurrency: Most requests in flight (default: the client's transfer concurrency).
            overwrite: Replace existing files.
            skip_existing: Leave a local file alone when its CRC32C already matches.
            raise_on_error: After all files ran, raise the first error.
            on_progress: Called with per-file and aggregate progress events.
        """
        outcomes = await self._engine.download_many(
            file_ids,
            Path(dest_dir),
            concurrency=concurrency,
            on_progress=on_progress,
            skip_existing=skip_existing,
            overwrite=overwrite,
        )
        if raise_on_error:
            _raise_first([o.error for o in outcomes], len(outcomes))
        return outcomes

    async def read_bytes(self, file_id: str) -> bytes:
        """Fetch a whole file into memory, verified against its CRC32C (for small files)."""
        return await self._engine.read_bytes(file_id)


def _raise_first(errors: list[BaseException | None], total: int) -> None:
    failed = [e for e in errors if e is not None]
    if not failed:
        return
    first = failed[0]
    if len(failed) > 1:
        first.add_note(f"{len(failed)} of {total} transfers failed; this is the first.")
    if isinstance(first, Exception):
        raise first
    raise TransferError(str(first)) from first

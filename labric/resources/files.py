"""``client.files``: list, inspect, upload, download and delete instrument files."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from labric._core.context import current_execution_id
from labric._core.pagination import AsyncPager
from labric._core.transport import Transport
from labric._core.urls import path_segment
from labric._transfer.context import _json_object
from labric._transfer.download import DEFAULT_READ_LIMIT
from labric._transfer.engine import TransferEngine
from labric._transfer.progress import ProgressCallback, _Progress
from labric._transfer.sources import UploadSourceType
from labric.errors import APIResponseValidationError, APIStatusError, TransferError
from labric.models.files import FileContent, FileInfo, FileUpload, UploadStatus
from labric.models.transfers import DownloadOutcome, UploadOutcome
from labric.resources._base import AsyncResource


@attrs.define
class _Attribution:
    """The ids an upload call records its files under, whether the call succeeded, and what
    went wrong closing the execution it opened (a warning: the files are uploaded)."""

    ids: dict[str, str] = attrs.field(factory=dict)
    succeeded: bool = False
    warnings: list[str] = attrs.field(factory=list)


__all__ = ["AsyncFiles"]

logger = logging.getLogger("labric")


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
        response = await self._engine.api("POST", "/v1/job-executions", json={})
        execution_id = _json_object(response).get("job_execution_id")
        if not isinstance(execution_id, str) or not execution_id:
            raise APIResponseValidationError(
                "POST /v1/job-executions answered without a job_execution_id string "
                f"(got {type(execution_id).__name__}); nothing was uploaded",
                method=response.method,
                path=response.path,
                request_id=response.request_id,
            )
        own = _Attribution(ids={"job_execution_id": execution_id})
        try:
            yield own
        except BaseException as exc:
            # The upload's own failure stays the error; closing's failure only joins it.
            problem = await self._close_execution(execution_id, own)
            if problem is not None:
                exc.add_note(problem)
            raise
        problem = await self._close_execution(execution_id, own)
        if problem is not None:
            own.warnings.append(problem)

    async def _close_execution(self, execution_id: str, own: _Attribution) -> str | None:
        """Close the execution an upload call opened; the failure, logged, or ``None``.

        Bookkeeping: the files are uploaded whatever happens here, so a failure is never raised
        (a caller retrying would upload them twice).
        """
        status = "completed" if own.succeeded else "failed"
        try:
            await self._engine.api(
                "PATCH",
                f"/v1/job-executions/{path_segment(execution_id, 'execution_id')}",
                json={"status": status},
            )
        except Exception as exc:
            problem = (
                f"Closing job execution {execution_id} as {status} failed ({exc}); the upload "
                "itself is unaffected"
            )
            logger.warning("%s", problem)
            return problem
        return None

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

    async def copy(
        self,
        file_id: str,
        *,
        original_path: str,
        job_execution_id: str | None = None,
    ) -> FileInfo:
        """Copy a file to a new path: a new file with the same bytes, its own id and attribution.

        The server copies without moving the bytes (``POST /v1/files/{id}/copy``). A server
        without that route (the hosted API) gets a streamed copy instead: the file is downloaded
        to a temporary file, verified, and uploaded under the new path.

        Args:
            file_id: The file to copy.
            original_path: The copy's path, e.g. ``"run42/plate1.csv"``.
            job_execution_id: Record the copy under this execution (default: the running job's,
                else a new off-platform execution opened and closed for this call).

        Returns:
            The new file.

        Raises:
            NotFoundError: no such file in your organisation.
            APIError: the copy failed after retries.

        Example::

            copy = await client.files.copy(f.file_id, original_path="archive/plate1.csv")
        """
        async with self._attribution(job_execution_id, None) as attribution:
            body = {"original_path": original_path, **attribution.ids}
            try:
                response = await self._transport.request(
                    "POST", _file_path(file_id, "/copy"), json=body
                )
            except APIStatusError as exc:
                if not await self._lacks_copy_route(file_id, exc):
                    raise
                copied = await self._copy_by_transfer(file_id, original_path, attribution.ids)
            else:
                copied = self._parse(response, FileInfo)
            attribution.succeeded = True
            return copied

    async def _lacks_copy_route(self, file_id: str, exc: APIStatusError) -> bool:
        """Whether a failed copy request means the server has no copy route (not: no file).

        A 405, or a 404 while the file itself is there (asked directly, since a missing route
        and a missing file both answer 404 and their wording is the server's own).
        """
        if exc.status_code == 405:
            return True
        if exc.status_code != 404:
            return False
        await self.get(file_id)  # NotFoundError when it was the file that was missing
        return True

    async def _copy_by_transfer(
        self, file_id: str, original_path: str, attribution: dict[str, str]
    ) -> FileInfo:
        """Copy through this machine: download to a temporary file, upload it (streamed both
        ways, checksummed both ways)."""
        source = await self.get(file_id)
        tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="labric-copy-")
        try:
            local = await self.download(file_id, Path(tmp) / "copy")
            uploaded, _ = await self._engine.upload(
                local,
                name=original_path,
                content_type=source.content_type,
                attribution=attribution,
                progress=_Progress("upload", None, 1),
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        return await self.get(uploaded.file_id)

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
                An exception it raises before the file is confirmed stops the upload and is
                raised as is; after, it is only logged (the file is uploaded).

        Returns:
            The confirmed file. What fails around a confirmed upload (closing the execution
            this call opened, the resume journal's disk) is logged on the ``labric`` logger,
            never raised: the file is on the platform, and a retry would upload it twice.

        Raises:
            FileNotFoundError: the path does not exist.
            ValueError: bytes or a stream without ``name``.
            TransferError: the file changed while it was being uploaded, is over 5 TiB, or the
                server's part plan is impossible.
            IntegrityError: the server stored different bytes than were sent.
            APIError: the upload failed after retries (transient failures are retried until
                ``TransferConfig.retry_deadline``).
            APIResponseValidationError: opening the execution got a malformed answer (nothing
                was uploaded).

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
                warnings=attribution.warnings,
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
            What failed around an uploaded file (closing the execution this call opened, the
            resume journal, the progress callback after confirm) is in its ``.warnings`` and
            logged, never an error. With ``raise_on_error``, a file's error is raised and such
            warnings are added to it as notes.
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
        if attribution.warnings:
            extra = tuple(attribution.warnings)
            outcomes = [attrs.evolve(o, warnings=o.warnings + extra) for o in outcomes]
        if raise_on_error:
            _raise_first([o.error for o in outcomes], len(outcomes), notes=attribution.warnings)
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

        Bytes are written to a new hidden temporary file next to ``dest``
        (``.<name>.<random>.labric-part``, created exclusively, so no existing file is touched)
        and moved to ``dest`` only once complete, fsynced and matching the file's CRC32C: nothing
        partial ever appears under the final name. Large files are fetched as concurrent ranges,
        and an interrupted large download resumes. When neither the API nor storage gives a
        checksum, only the size is checked and a warning is logged.

        Args:
            file_id: The file.
            dest: A file path, or an existing directory to put it in under its own name.
            overwrite: Replace an existing file at ``dest``. Without it, a file that appears at
                ``dest`` during the download is not replaced either.
            on_progress: Called with :class:`~labric.models.TransferProgress` events.

        Returns:
            The path written.

        Raises:
            FileExistsError: ``dest`` exists and ``overwrite`` is false.
            IntegrityError: the bytes did not match their checksum, or the file kept changing.
            UnsafeNameError: ``dest`` is a directory and the file's name is unsafe.
            TransferError: the storage server's answer contradicts the file's size or range.
            APIError: the download failed after retries.
        """
        progress = _Progress("download", on_progress, 1)
        done = await self._engine.download(
            file_id, Path(dest), overwrite=overwrite, progress=progress
        )
        return done.path

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

        Each file lands at its platform path under ``dest_dir``. Platform paths are untrusted and
        handled deterministically: separators of either kind (``/``, ``\\``) split folders; a
        root, a drive (``C:``) or a UNC prefix, empty and ``.`` segments are dropped
        (``C:\\data\\x.csv`` lands at ``data/x.csv``). A path is refused, failing that file
        and no other with an :class:`~labric.errors.UnsafeNameError` that names the file id and
        shows the path escaped, when it has a ``..`` segment, a NUL or other control character
        (a newline, say), a bidi control (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C), or a
        segment over 255 bytes. Folders inside ``dest_dir`` are never followed through a
        symlink, and a symlink at a final name is replaced (``overwrite``) or refused, never
        written through. Two files that map to one path: the second fails with a
        :class:`~labric.errors.TransferError`, the first is not overwritten.

        Each download writes a hidden temporary file of its own next to its final path, so a
        platform file named ``data.csv.part`` and one named ``data.csv`` never collide. A file
        whose bytes nothing could verify (no checksum from the API or storage) has only its size
        checked and is reported with ``unverified=True`` and a warning.

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

    async def read_bytes(self, file_id: str, *, max_bytes: int = DEFAULT_READ_LIMIT) -> bytes:
        """Fetch a whole file into memory, verified against its CRC32C (for small files).

        Args:
            file_id: The file.
            max_bytes: The most bytes to hold in memory (default 256 MiB). A file stated to be
                larger fails before any byte is read; one of unknown size fails as soon as its
                body passes the bound.

        Returns:
            The file's bytes: no more and no less than its stated size.

        Raises:
            TransferError: the file is over ``max_bytes``, or longer or shorter than stated.
            IntegrityError: the bytes did not match their checksum.
            APIError: the request failed after retries.
        """
        return await self._engine.read_bytes(file_id, max_bytes=max_bytes)


def _raise_first(
    errors: list[BaseException | None], total: int, *, notes: Sequence[str] = ()
) -> None:
    failed = [e for e in errors if e is not None]
    if not failed:
        return
    first = failed[0]
    if len(failed) > 1:
        first.add_note(f"{len(failed)} of {total} transfers failed; this is the first.")
    for note in notes:
        first.add_note(note)
    if isinstance(first, Exception):
        raise first
    raise TransferError(str(first)) from first

"""The transfer engine: uploads and downloads of one file or twenty thousand, bounded and lossless.

:class:`TransferEngine` owns what all transfers of one client share, and hands each call to the
module that does it:

Scheduling (:mod:`~labric._transfer.scheduling`, :mod:`~labric._transfer.context`)
    Every storage and API request a transfer makes takes a slot from one limiter (requests in
    flight, never above the connection pool, halved on 429/503 and grown back one slot at a time)
    and every buffered byte is reserved from one memory budget. Small files and the parts of huge
    files share both, so memory stays under the budget whatever the mix.

Sources (:mod:`~labric._transfer.sources`)
    A path, bytes, a binary file object or an async iterable of bytes, measured once and read by
    range; non-seekable streams are spooled to a temporary file, not to memory.

Uploads (:mod:`~labric._transfer.upload`)
    One streamed ``PUT`` or concurrent checksummed part ``PUT``s, then ``confirm-upload``; the
    whole file's CRC32C is compared with what the server recorded. A file's parts are
    checksummed, then streamed, from the file (read twice, never buffered whole), so an upload's
    memory does not grow with the file. Path sources are journalled
    (:mod:`~labric._transfer.journal`), so a rerun after a crash sends only what is missing.

Downloads (:mod:`~labric._transfer.download`, :mod:`~labric._transfer.naming`)
    Bytes go to a new temporary file next to ``dest`` (random name, created exclusively), moved to
    ``dest`` only once verified and fsynced. Large objects are fetched as concurrent ranges pinned
    to one ETag; an interrupted ranged download resumes. Server-supplied names never leave the
    destination directory, nor follow a symlink out of it.

Bulk (:mod:`~labric._transfer.bulk`, :mod:`~labric._transfer.progress`)
    Many files in one call, with bounded parallelism and one outcome per input, in input order;
    directories and globs expand into files.

Failure
    Requests are retried by the transport's policy (with the same ``Idempotency-Key`` for API
    writes); a transfer's requests keep retrying transient failures until
    ``TransferConfig.retry_deadline`` (:meth:`~labric._transfer.context.TransferContext.retrying`).
    Cancellation stops every worker promptly; nothing is renamed into place afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labric._core.config import TransferConfig
from labric._core.transport import Response, Transport
from labric._transfer.bulk import BulkTransfers
from labric._transfer.context import TransferContext
from labric._transfer.download import Downloaded, Downloader
from labric._transfer.journal import Journal
from labric._transfer.progress import ProgressCallback, _Progress
from labric._transfer.scheduling import AdaptiveLimiter, BufferPool, MemoryBudget
from labric._transfer.sources import UploadSourceType
from labric._transfer.upload import Uploader
from labric.models.files import FileContent, FileUpload
from labric.models.transfers import DownloadOutcome, UploadOutcome

__all__ = ["TransferEngine"]


class TransferEngine:
    """Runs uploads and downloads for one client.

    Args:
        transport: The client's transport.
        config: Transfer settings.
    """

    def __init__(self, transport: Transport, config: TransferConfig) -> None:
        limit = max(1, min(config.concurrency, transport.config.max_connections))
        self.limiter = AdaptiveLimiter(limit)
        self.memory = MemoryBudget(config.memory_budget)
        self.buffers = BufferPool(config.memory_budget)
        self.journal = Journal(config.state_dir)
        context = TransferContext(
            transport,
            config,
            limiter=self.limiter,
            memory=self.memory,
            buffers=self.buffers,
            journal=self.journal,
        )
        self._context = context
        self._uploads = Uploader(context)
        self._downloads = Downloader(context)
        self._bulk = BulkTransfers(context, self._uploads, self._downloads)

    def close(self) -> None:
        """Release the journal's thread and database, and the file-reading thread."""
        self.journal.close()
        self._context.close()

    async def api(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Response:
        """An API request under the limiter, retried by the client's retry count (it is not a
        request of a file's transfer, so the transfer retry deadline does not apply)."""
        return await self._context.api(method, path, json=json, params=params, transfer=False)

    # -- one file ---------------------------------------------------------------------------

    async def upload(
        self,
        source: UploadSourceType,
        *,
        name: str | None,
        content_type: str | None,
        attribution: dict[str, str],
        progress: _Progress,
        resume: bool = True,
        warnings: list[str] | None = None,
    ) -> tuple[FileUpload, bool]:
        """Upload one source; returns the confirmed file and whether it was already there.

        ``warnings`` receives what went wrong around an upload that still succeeded.
        """
        return await self._uploads.upload(
            source,
            name=name,
            content_type=content_type,
            attribution=attribution,
            progress=progress,
            resume=resume,
            warnings=warnings,
        )

    async def content(self, file_id: str) -> FileContent:
        """A file's download URL, size and CRC32C."""
        return await self._downloads.content(file_id)

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

        Returns where it landed, whether an identical file was already there, and whether its
        bytes could be verified.
        """
        return await self._downloads.download(
            file_id,
            dest,
            overwrite=overwrite,
            progress=progress,
            skip_existing=skip_existing,
            claimed=claimed,
        )

    async def read_bytes(self, file_id: str, *, max_bytes: int) -> bytes:
        """Fetch a whole file (at most ``max_bytes``) into memory, verified against its CRC32C."""
        return await self._downloads.read_bytes(file_id, max_bytes=max_bytes)

    # -- many files -------------------------------------------------------------------------

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
        """Upload many sources (directories and globs expanded); one outcome each, in order."""
        return await self._bulk.upload_many(
            sources,
            concurrency=concurrency,
            attribution=attribution,
            on_progress=on_progress,
            skip_existing=skip_existing,
            content_type=content_type,
        )

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
        """Download many files under ``dest_dir``; one outcome each, in order."""
        return await self._bulk.download_many(
            file_ids,
            dest_dir,
            concurrency=concurrency,
            on_progress=on_progress,
            skip_existing=skip_existing,
            overwrite=overwrite,
        )

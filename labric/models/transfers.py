"""Outcomes and progress events of file transfers."""

from __future__ import annotations

import os

import attrs

from labric.models._base import OpenEnum, bounded_repr
from labric.models.files import FileUpload

__all__ = ["DownloadOutcome", "TransferPhase", "TransferProgress", "UploadOutcome"]


class TransferPhase(OpenEnum):
    """Where a transfer stands, as reported to ``on_progress``."""

    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    FAILED = "failed"


@attrs.frozen(kw_only=True)
class TransferProgress:
    """One progress event.

    Attributes:
        direction: ``"upload"`` or ``"download"``.
        phase: What happened (started, progress, completed, skipped, failed).
        file: The file's name (uploads) or id (downloads) the event is about.
        bytes_done: Bytes of this file transferred so far.
        bytes_total: This file's size, when known.
        total_bytes_done: Bytes transferred so far across the whole call.
        total_bytes: Bytes the whole call will transfer, when known.
        files_done: Files finished (completed, skipped or failed) so far in the call.
        files_total: Files in the call.
        rate: Aggregate throughput of the call so far, in bytes per second.
    """

    direction: str
    phase: TransferPhase
    file: str
    bytes_done: int
    bytes_total: int | None
    total_bytes_done: int
    total_bytes: int | None
    files_done: int
    files_total: int
    rate: float


@attrs.frozen(kw_only=True)
class UploadOutcome:
    """The result of one source of ``upload_many``: the uploaded file, or the error.

    Attributes:
        source: The source as given (a path for directory and glob entries).
        file: The confirmed upload, when it succeeded or was skipped.
        error: Why it failed, when it did.
        skipped: True when an identical file was already there (``skip_existing``) or the
            upload had already been confirmed by an earlier, interrupted run.
        warnings: What went wrong around a transfer that still succeeded (for example closing
            the job execution the call opened), one line each. A warning never replaces a
            result: the file is on the platform whatever these say.
    """

    __repr__ = bounded_repr

    source: object
    file: FileUpload | None = None
    error: BaseException | None = None
    skipped: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the source is now on the platform."""
        return self.error is None


@attrs.frozen(kw_only=True)
class DownloadOutcome:
    """The result of one file id of ``download_many``.

    Attributes:
        file_id: The file id as given.
        path: Where the file now is, when it succeeded or was skipped.
        error: Why it failed, when it did.
        skipped: True when an identical local file was already there (``skip_existing``).
        unverified: True when nothing could check the bytes: neither the API nor storage gave a
            checksum for the file. Its size matched; its content could not be confirmed.
        warnings: What went wrong around a transfer that still succeeded, one line each.
    """

    __repr__ = bounded_repr

    file_id: str
    path: os.PathLike[str] | None = None
    error: BaseException | None = None
    skipped: bool = False
    unverified: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the file is now on disk (its bytes verified, unless ``unverified``)."""
        return self.error is None

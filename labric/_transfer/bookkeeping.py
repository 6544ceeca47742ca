"""Upload bookkeeping: the resume journal and the report of a finished file, which never fail it.

Bookkeeping never replaces a result
    Once the server confirmed a file, what fails afterwards (the journal's disk, the progress
    callback) is logged on the ``labric`` logger and added to the call's ``warnings``; the file
    is returned. Before confirm, an exception from the progress callback stops the upload and
    propagates unchanged (it is the caller's); a journal that cannot be written only costs the
    ability to resume, so it is a warning too.

Journal entries are written behind (:func:`record_journal` never raises) and put on disk before
every confirm (:func:`flush_journal`), so a failing disk shows there, as a warning.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from labric._transfer.checksum import crc32c_to_b64
from labric._transfer.context import TransferContext
from labric._transfer.progress import _Progress
from labric._transfer.sources import _Source
from labric.models.files import FileUpload
from labric.models.transfers import TransferPhase

__all__ = ["finished", "flush_journal", "record_journal"]

logger = logging.getLogger("labric")

#: What a broken resume journal raises (a full or read-only disk, a corrupt database).
_JOURNAL_ERRORS = (sqlite3.Error, OSError)


async def record_journal(ctx: TransferContext, key: str | None, value: dict[str, Any]) -> None:
    if key is not None:
        # Write-behind (never raises here); a failing disk shows at the next flush.
        await ctx.journal.put("upload", key, value)


async def flush_journal(
    ctx: TransferContext, key: str | None, src: _Source, notes: list[str]
) -> None:
    """Put the journal on disk before confirming; a broken journal only costs resuming."""
    if key is None:
        return
    try:
        await ctx.journal.flush()
    except _JOURNAL_ERRORS as exc:
        _warn(
            notes,
            f"The resume journal could not be written ({exc}); if the upload of "
            f"{src.name!r} is interrupted, it starts over",
        )


async def finished(
    ctx: TransferContext,
    key: str | None,
    result: FileUpload,
    src: _Source,
    progress: _Progress,
    notes: list[str],
    phase: TransferPhase,
    *,
    unsent: bool = False,
) -> None:
    """Record a confirmed upload and report it; ``unsent``: no byte of it was counted."""
    await record_journal(ctx, key, {"file_id": result.file_id, "confirmed": True})
    if unsent or phase is TransferPhase.SKIPPED:
        progress.total_done += src.size
    try:
        progress.finished_file(phase, src.name, src.size, src.size)
    except Exception as exc:
        # The file is on the platform: the callback's failure must not make it look lost.
        _warn(
            notes,
            f"The progress callback raised {exc!r} after {src.name!r} was uploaded "
            f"(file {result.file_id})",
        )


def _warn(notes: list[str], message: str) -> None:
    logger.warning("%s", message)
    notes.append(message)


def _b64_parts(crcs: dict[int, int]) -> dict[str, str]:
    return {str(n): crc32c_to_b64(c) for n, c in crcs.items()}

"""Resuming uploads: what a rerun may take over of what the server already holds.

A journalled upload (path sources, see :mod:`labric._transfer.journal`) is looked up before a new
one is started (:func:`try_resume`): one the server confirmed is not sent again; otherwise
``upload-status`` says which parts the server holds, and only the missing ones are sent. A single
``PUT`` whose answer was lost is confirmed instead of sent again.

Never a mix of two versions
    The journal is keyed by path, size and mtime, which a rewrite can keep (``cp -p``,
    ``rsync -t``, coarse clocks). So nothing the server holds is trusted on resume: every stored
    part is read again from disk and its CRC32C compared with the server's; one mismatch means
    the file changed, and a fresh upload is started (:class:`_Stale`: the server replaces re-sent
    parts that differ). A journalled single ``PUT`` is confirmed only when the file's CRC32C now
    equals the one it sent. A confirmed file is taken as done only when its CRC32C equals the
    file's now. A server's stored plan that does not fit the file starts the upload over.
"""

from __future__ import annotations

import attrs

from labric._transfer.bookkeeping import _JOURNAL_ERRORS, _warn, finished
from labric._transfer.checksum import crc32c_extend, crc32c_from_b64
from labric._transfer.context import TransferContext, _fpath, _json_object, _model
from labric._transfer.parts import confirm_landed, upload_parts
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import MAX_PARTS, _gather_all, iter_parts
from labric._transfer.sources import _Source
from labric.errors import APIStatusError
from labric.models.files import FileUpload, UploadPart, UploadStatus, UploadURL
from labric.models.transfers import TransferPhase

__all__ = ["read_crc", "try_resume"]


@attrs.define
class _Stale:
    """An interrupted multipart upload whose stored parts no longer all match the file.

    ``verified`` holds the parts that still match (read again in this run); they are reused only
    when the fresh ticket names the same file id (the server kept them).
    """

    file_id: str
    verified: dict[int, int]


async def confirmed_upload(ctx: TransferContext, file_id: str, src: _Source) -> FileUpload | None:
    """The file as the server has it, or ``None`` if it is gone."""
    try:
        info = _json_object(await ctx.api("GET", _fpath(file_id)))
    except APIStatusError as exc:
        if exc.status_code in (404, 410):
            return None
        raise
    return FileUpload(
        file_id=file_id,
        file_name=info.get("file_name") or src.name,
        size_kilobytes=info.get("size_kilobytes"),
        size_bytes=info.get("size_bytes"),
        crc32c_hash=info.get("crc32c_hash"),
    )


async def still_there(ctx: TransferContext, file_id: str, src: _Source) -> FileUpload | None:
    """The confirmed file, when it holds what the source holds now; else ``None``."""
    existing = await confirmed_upload(ctx, file_id, src)
    if existing is None or not isinstance(existing.crc32c_hash, str):
        return None
    try:
        stored = crc32c_from_b64(existing.crc32c_hash)
    except ValueError:
        return None
    # Same path, size and mtime is not the same bytes (cp -p): compare what is there.
    if await read_crc(ctx, src) != stored:
        return None
    return existing


async def try_resume(
    ctx: TransferContext, key: str, src: _Source, progress: _Progress, notes: list[str]
) -> tuple[FileUpload, bool] | _Stale | None:
    try:
        entry = await ctx.journal.get("upload", key)
    except _JOURNAL_ERRORS as exc:
        _warn(notes, f"The resume journal could not be read ({exc}); {src.name!r} is sent")
        return None
    if entry is None or not isinstance(entry.get("file_id"), str):
        return None
    file_id: str = entry["file_id"]
    if entry.get("confirmed"):
        existing = await still_there(ctx, file_id, src)
        if existing is not None:
            await finished(ctx, key, existing, src, progress, notes, TransferPhase.SKIPPED)
            return existing, True
        await ctx.journal.delete("upload", key)
        return None
    try:
        status = _model(await ctx.api("GET", _fpath(file_id, "/upload-status")), UploadStatus)
    except APIStatusError as exc:
        if exc.status_code in (404, 410):
            await ctx.journal.delete("upload", key)
            return None
        raise
    if status.status == "confirmed":
        existing = await still_there(ctx, file_id, src)
        if existing is not None:
            await finished(ctx, key, existing, src, progress, notes, TransferPhase.SKIPPED)
            return existing, True
        return None
    if entry.get("parts") is None:
        # A single PUT that may have landed before the crash. Confirm it only when the file
        # holds now what that PUT sent: the journal has its CRC32C once the PUT succeeded.
        sent = entry.get("crc32c")
        if not isinstance(sent, str):
            return None  # the PUT never finished: what (if anything) landed is unknown
        now = await read_crc(ctx, src)
        try:
            if now != crc32c_from_b64(sent):
                return None  # the file changed since: send it again
        except ValueError:
            return None
        landed = await confirm_landed(ctx, file_id, src, now)
        if landed is None:
            return None  # nothing stored: start over with a fresh ticket
        await finished(ctx, key, landed, src, progress, notes, TransferPhase.COMPLETED, unsent=True)
        return landed, False
    checked = await verify_stored(ctx, src, status)
    if checked is None:
        return None  # the file changed shape, or the server's plan is not one: start over
    verified, ticket, matched = checked
    if not matched:
        return _Stale(file_id, verified)
    result = await upload_parts(ctx, src, ticket, verified, key, progress, notes)
    await finished(ctx, key, result, src, progress, notes, TransferPhase.COMPLETED)
    return result, False


async def verify_stored(
    ctx: TransferContext, src: _Source, status: UploadStatus
) -> tuple[dict[int, int], UploadURL, bool] | None:
    """Read every part the server holds again and compare CRC32Cs with the server's.

    Returns the parts that match (number to CRC32C, read in this run), a ticket for the
    whole plan (stored parts with no URL, the missing ones with theirs) and whether every
    stored part matched; ``None`` when the stored plan does not fit the file.
    """
    part_size = status.part_size
    if part_size is None or part_size <= 0 or -(-src.size // part_size) > MAX_PARTS:
        return None
    stored = {p.number: p for p in status.parts}
    missing = {p.number: p for p in status.missing_parts}
    parts: list[UploadPart] = []
    for number, (offset, size) in enumerate(iter_parts(src.size, part_size), start=1):
        held = stored.get(number)
        if held is not None:
            if held.size != size or number in missing:
                return None
            parts.append(UploadPart(number=number, offset=offset, size=size, url=""))
            continue
        lacking = missing.get(number)
        if lacking is None or (lacking.offset, lacking.size) != (offset, size):
            return None
        parts.append(lacking)
    if len(parts) != len(stored) + len(missing):
        return None  # the server lists parts outside the plan
    verified: dict[int, int] = {}
    mismatched: list[int] = []

    async def verify(part: UploadPart) -> None:
        crc = await read_part_crc(ctx, src, part.offset, part.size)
        try:
            same = crc == crc32c_from_b64(stored[part.number].crc32c)
        except ValueError:
            same = False
        if same:
            verified[part.number] = crc
        else:
            mismatched.append(part.number)

    await _gather_all([verify(p) for p in parts if p.number in stored])
    ticket = UploadURL(
        file_id=status.file_id,
        upload_url="",
        expires_at="",
        part_size=part_size,
        parts=parts,
    )
    return verified, ticket, not mismatched


async def read_part_crc(ctx: TransferContext, src: _Source, offset: int, size: int) -> int:
    if src.streams:
        return await src.range_crc(offset, size, ctx.config.chunk_size)
    async with ctx.memory.reserve(size):
        buffer = None if src.data is not None else ctx.buffers.take(size)
        try:
            _, crc = await src.read_part(offset, size, buffer)
        finally:
            if buffer is not None:
                ctx.buffers.give(buffer)
    return crc


async def read_crc(ctx: TransferContext, src: _Source) -> int:
    """The whole source's CRC32C as it is now (one more read, in chunks)."""
    if src.streams:
        return await src.range_crc(0, src.size, ctx.config.chunk_size)
    crc = 0
    for offset, length in iter_parts(src.size, ctx.config.chunk_size):
        crc = crc32c_extend(crc, await src.read(offset, length))
    return crc

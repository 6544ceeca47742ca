"""Uploads: one source to one confirmed file, streamed, checksummed and resumable.

``POST upload-url`` (with the size), then either one streamed ``PUT`` (the hosted flow) or,
when the server offers parts, concurrent part ``PUT``s, each read with ``os.pread`` off the
event loop, checksummed and sent with ``x-goog-hash``; then ``confirm-upload``. The whole
file's CRC32C is computed while streaming (combined across parts, never a second read) and
compared with what the server recorded. Path sources are journalled (see
:mod:`labric._transfer.journal`): a rerun after a crash asks ``upload-status`` and sends only
the missing parts, and an upload the server has confirmed is never sent again. A single ``PUT``
whose answer was lost (412 on retry: the object is stored, create-only) is confirmed instead of
sent again.

Never a mix of two versions
    The journal is keyed by path, size and mtime, which a rewrite can keep (``cp -p``,
    ``rsync -t``, coarse clocks). So nothing the server holds is trusted on resume: every stored
    part is read again from disk and its CRC32C compared with the server's; one mismatch means
    the file changed, and a fresh upload is started (the server replaces re-sent parts that
    differ). A journalled single ``PUT`` is confirmed only when the file's CRC32C now equals the
    one it sent. The CRC32C compared with the server's at confirm is always made of bytes read
    in this run. A file that changes while it is sent (see
    :meth:`~labric._transfer.sources._Source.check_unchanged`) fails before confirm.

Bookkeeping never replaces a result
    Once the server confirmed a file, what fails afterwards (the journal's disk, the progress
    callback) is logged on the ``labric`` logger and added to the call's ``warnings``; the file
    is returned. Before confirm, an exception from the progress callback stops the upload and
    propagates unchanged (it is the caller's); a journal that cannot be written only costs the
    ability to resume, so it is a warning too.

Impossible plans
    Sources over 5 TiB are refused before anything is sent, and a server's part plan is checked
    part by part (:func:`~labric._transfer.scheduling.check_part_plan`); no list as long as the
    file's part count is built before the plan was found sane.

A part in flight holds its buffer (reused, see :class:`~labric._transfer.scheduling.BufferPool`)
under the shared memory budget; every request takes a limiter slot (see
:mod:`labric._transfer.context`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs

from labric._core.transport import Response
from labric._transfer.checksum import (
    crc32c_combine,
    crc32c_extend,
    crc32c_from_b64,
    crc32c_to_b64,
)
from labric._transfer.context import TransferContext, _fpath, _goog_crc, _json_object, _model
from labric._transfer.journal import journal_key
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import (
    MAX_PARTS,
    _gather_all,
    check_part_plan,
    check_upload_size,
    iter_parts,
)
from labric._transfer.sources import UploadSourceType, _Source, open_source
from labric.errors import APIStatusError, IntegrityError, TransferError
from labric.models.files import FileUpload, UploadPart, UploadStatus, UploadURL
from labric.models.transfers import TransferPhase

__all__ = ["Uploader"]

logger = logging.getLogger("labric")

#: What a broken resume journal raises (a full or read-only disk, a corrupt database).
_JOURNAL_ERRORS = (sqlite3.Error, OSError)


@attrs.define
class _Stale:
    """An interrupted multipart upload whose stored parts no longer all match the file.

    ``verified`` holds the parts that still match (read again in this run); they are reused only
    when the fresh ticket names the same file id (the server kept them).
    """

    file_id: str
    verified: dict[int, int]


class Uploader:
    """A client's uploads, one source per call (calls run concurrently).

    Args:
        context: The engine's shared transport, settings and state.
    """

    def __init__(self, context: TransferContext) -> None:
        self._ctx = context

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

        ``warnings`` (when given) receives what went wrong around the upload without failing
        it, one line each (also logged).
        """
        notes = warnings if warnings is not None else []
        src = await open_source(
            source, name=name, content_type=content_type, chunk_size=self._ctx.config.chunk_size
        )
        try:
            return await self._upload_source(src, attribution, progress, resume=resume, notes=notes)
        finally:
            src.close()

    async def _upload_source(
        self,
        src: _Source,
        attribution: dict[str, str],
        progress: _Progress,
        *,
        resume: bool,
        notes: list[str],
    ) -> tuple[FileUpload, bool]:
        check_upload_size(src.name, src.size)
        progress.started_file(src.name, src.size)
        key = None
        stale: _Stale | None = None
        if resume and src.identity is not None:
            key = journal_key(
                self._ctx.origin,
                self._ctx.key_prefix,
                src.name,
                attribution.get("instrument_id", ""),
                *src.identity,
            )
            resumed = await self._try_resume(key, src, progress, notes)
            if isinstance(resumed, _Stale):
                stale = resumed
            elif resumed is not None:
                return resumed
        body: dict[str, Any] = {
            "file_name": src.name,
            "content_type": src.content_type,
            **attribution,
        }
        if src.size >= self._ctx.config.multipart_threshold:
            # The size lets the server offer parts: concurrent, checksummed, resumable.
            body["size_bytes"] = src.size
        ticket = _model(await self._ctx.api("POST", "/v1/files/upload-url", json=body), UploadURL)
        if ticket.parts:
            # The server keeps the parts of an unconfirmed upload on the same path; those read
            # again and found equal need not travel twice.
            done = stale.verified if stale is not None and stale.file_id == ticket.file_id else {}
            await self._journal(key, {"file_id": ticket.file_id, "parts": _b64_parts(done)})
            result = await self._upload_parts(src, ticket, done, key, progress, notes)
        else:
            await self._journal(key, {"file_id": ticket.file_id, "parts": None})
            result = await self._upload_single(src, ticket, progress, key, notes)
        await self._finished(key, result, src, progress, notes, TransferPhase.COMPLETED)
        return result, False

    # -- after confirm: nothing here may fail the upload ---------------------------------------

    async def _journal(self, key: str | None, value: dict[str, Any]) -> None:
        if key is not None:
            # Write-behind (never raises here); a failing disk shows at the next flush.
            await self._ctx.journal.put("upload", key, value)

    async def _flush_journal(self, key: str | None, src: _Source, notes: list[str]) -> None:
        """Put the journal on disk before confirming; a broken journal only costs resuming."""
        if key is None:
            return
        try:
            await self._ctx.journal.flush()
        except _JOURNAL_ERRORS as exc:
            _warn(
                notes,
                f"The resume journal could not be written ({exc}); if the upload of "
                f"{src.name!r} is interrupted, it starts over",
            )

    async def _finished(
        self,
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
        await self._journal(key, {"file_id": result.file_id, "confirmed": True})
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

    # -- resuming ------------------------------------------------------------------------------

    async def _confirmed_upload(self, file_id: str, src: _Source) -> FileUpload | None:
        """The file as the server has it, or ``None`` if it is gone."""
        try:
            info = _json_object(await self._ctx.api("GET", _fpath(file_id)))
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

    async def _still_there(self, file_id: str, src: _Source) -> FileUpload | None:
        """The confirmed file, when it holds what the source holds now; else ``None``."""
        existing = await self._confirmed_upload(file_id, src)
        if existing is None or not isinstance(existing.crc32c_hash, str):
            return None
        try:
            stored = crc32c_from_b64(existing.crc32c_hash)
        except ValueError:
            return None
        # Same path, size and mtime is not the same bytes (cp -p): compare what is there.
        if await self._read_crc(src) != stored:
            return None
        return existing

    async def _try_resume(
        self, key: str, src: _Source, progress: _Progress, notes: list[str]
    ) -> tuple[FileUpload, bool] | _Stale | None:
        try:
            entry = await self._ctx.journal.get("upload", key)
        except _JOURNAL_ERRORS as exc:
            _warn(notes, f"The resume journal could not be read ({exc}); {src.name!r} is sent")
            return None
        if entry is None or not isinstance(entry.get("file_id"), str):
            return None
        file_id: str = entry["file_id"]
        if entry.get("confirmed"):
            existing = await self._still_there(file_id, src)
            if existing is not None:
                await self._finished(key, existing, src, progress, notes, TransferPhase.SKIPPED)
                return existing, True
            await self._ctx.journal.delete("upload", key)
            return None
        try:
            status = _model(
                await self._ctx.api("GET", _fpath(file_id, "/upload-status")), UploadStatus
            )
        except APIStatusError as exc:
            if exc.status_code in (404, 410):
                await self._ctx.journal.delete("upload", key)
                return None
            raise
        if status.status == "confirmed":
            existing = await self._still_there(file_id, src)
            if existing is not None:
                await self._finished(key, existing, src, progress, notes, TransferPhase.SKIPPED)
                return existing, True
            return None
        if entry.get("parts") is None:
            # A single PUT that may have landed before the crash. Confirm it only when the file
            # holds now what that PUT sent: the journal has its CRC32C once the PUT succeeded.
            sent = entry.get("crc32c")
            if not isinstance(sent, str):
                return None  # the PUT never finished: what (if anything) landed is unknown
            now = await self._read_crc(src)
            try:
                if now != crc32c_from_b64(sent):
                    return None  # the file changed since: send it again
            except ValueError:
                return None
            landed = await self._confirm_landed(file_id, src, now)
            if landed is None:
                return None  # nothing stored: start over with a fresh ticket
            await self._finished(
                key, landed, src, progress, notes, TransferPhase.COMPLETED, unsent=True
            )
            return landed, False
        checked = await self._verify_stored(src, status)
        if checked is None:
            return None  # the file changed shape, or the server's plan is not one: start over
        verified, ticket, matched = checked
        if not matched:
            return _Stale(file_id, verified)
        result = await self._upload_parts(src, ticket, verified, key, progress, notes)
        await self._finished(key, result, src, progress, notes, TransferPhase.COMPLETED)
        return result, False

    async def _verify_stored(
        self, src: _Source, status: UploadStatus
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
            crc = await self._read_part_crc(src, part.offset, part.size)
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

    async def _read_part_crc(self, src: _Source, offset: int, size: int) -> int:
        async with self._ctx.memory.reserve(size):
            buffer = None if src.data is not None else self._ctx.buffers.take(size)
            try:
                _, crc = await src.read_part(offset, size, buffer)
            finally:
                if buffer is not None:
                    self._ctx.buffers.give(buffer)
        return crc

    async def _read_crc(self, src: _Source) -> int:
        """The whole source's CRC32C as it is now (one more read, in chunks)."""
        crc = 0
        for offset, length in iter_parts(src.size, self._ctx.config.chunk_size):
            crc = crc32c_extend(crc, await src.read(offset, length))
        return crc

    # -- sending -------------------------------------------------------------------------------

    async def _upload_single(
        self,
        src: _Source,
        ticket: UploadURL,
        progress: _Progress,
        key: str | None,
        notes: list[str],
    ) -> FileUpload:
        chunk = self._ctx.config.chunk_size
        crc_holder: list[int | None] = [None]
        sent = [0]

        async def body(touch: Callable[[], None]) -> AsyncIterator[bytes]:
            crc = 0
            for offset, length in iter_parts(src.size, chunk):
                data = await src.read(offset, length)
                crc = crc32c_extend(crc, data)
                sent[0] += len(data)
                progress.advance(src.name, len(data), sent[0], src.size)
                touch()
                yield data
            crc_holder[0] = crc

        async def put_once() -> int | None:
            progress.total_done -= sent[0]
            sent[0] = 0
            headers = {**ticket.headers, "Content-Length": str(src.size)}

            async def send() -> int | None:
                async with (
                    self._ctx.memory.reserve(min(chunk, src.size)),
                    self._ctx.stall_guard("PUT", ticket.upload_url) as touch,
                    self._ctx.transport.stream(
                        "PUT",
                        ticket.upload_url,
                        headers=headers,
                        data=body(touch) if src.size else b"",
                    ) as resp,
                ):
                    await resp.read()
                    return _goog_crc(resp.headers.get("x-goog-hash"))

            return await self._ctx.slot_call(send)

        try:
            server_crc = await self._ctx.retrying(put_once, method="PUT", url=ticket.upload_url)
        except APIStatusError as exc:
            if exc.status_code != 412:
                raise
            # Create-only: an earlier attempt stored the object but its answer was lost.
            now = await self._read_crc(src)
            if crc_holder[0] is not None and crc_holder[0] != now:
                raise TransferError(
                    f"{src.name!r} changed while it was being uploaded; nothing was confirmed"
                ) from exc
            await src.check_unchanged()
            landed = await self._confirm_landed(ticket.file_id, src, now)
            if landed is None:
                raise
            return landed
        local = crc_holder[0] if crc_holder[0] is not None else 0
        if server_crc is not None and server_crc != local:
            raise IntegrityError(
                f"Upload of {src.name!r} was corrupted in transit (CRC32C "
                f"{crc32c_to_b64(local)} sent, {crc32c_to_b64(server_crc)} stored)"
            )
        await src.check_unchanged()
        # What was sent, so a rerun confirms the stored object only if the file still holds it.
        await self._journal(
            key, {"file_id": ticket.file_id, "parts": None, "crc32c": crc32c_to_b64(local)}
        )
        await self._flush_journal(key, src, notes)
        response = await self._ctx.api("POST", _fpath(ticket.file_id, "/confirm-upload"))
        return self._check_confirm(response, src, local)

    async def _confirm_landed(self, file_id: str, src: _Source, crc: int) -> FileUpload | None:
        """Confirm an upload whose bytes may be stored already; ``None`` when they are not.

        ``crc`` is the CRC32C of the source read in this run; the server's must equal it.
        """
        try:
            response = await self._ctx.api("POST", _fpath(file_id, "/confirm-upload"))
        except APIStatusError as exc:
            if exc.status_code in (400, 404, 409):
                return None
            raise
        return self._check_confirm(response, src, crc)

    async def _upload_parts(
        self,
        src: _Source,
        ticket: UploadURL,
        done: dict[int, int],
        key: str | None,
        progress: _Progress,
        notes: list[str],
    ) -> FileUpload:
        """Send the parts not in ``done`` (number to CRC32C of parts the server holds and that
        were read again in this run), then confirm with every part's CRC32C."""
        assert ticket.parts is not None
        check_part_plan(src.size, ticket.part_size, ticket.parts)
        parts = sorted(ticket.parts, key=lambda p: p.number)
        crcs: dict[int, int] = dict(done)
        already = sum(p.size for p in parts if p.number in done)
        progress.advance(src.name, already, already, src.size)
        sent = [already]

        async def one(part: UploadPart) -> None:
            # A part in flight holds its buffer, plus one slice copied into the socket's buffer.
            async with self._ctx.memory.reserve(
                part.size + min(part.size, self._ctx.config.chunk_size)
            ):
                buffer = None if src.data is not None else self._ctx.buffers.take(part.size)
                try:
                    await send_part(part, buffer)
                finally:
                    if buffer is not None:
                        self._ctx.buffers.give(buffer)
            sent[0] += part.size
            progress.advance(src.name, part.size, sent[0], src.size)
            await self._journal(key, {"file_id": ticket.file_id, "parts": _b64_parts(crcs)})

        async def send_part(part: UploadPart, buffer: bytearray | None) -> None:
            data, crc = await src.read_part(part.offset, part.size, buffer)
            headers = {
                **part.headers,
                "Content-Length": str(part.size),
                "x-goog-hash": f"crc32c={crc32c_to_b64(crc)}",
            }

            async def put_once() -> None:
                async def send() -> None:
                    async with (
                        self._ctx.stall_guard("PUT", part.url) as touch,
                        self._ctx.transport.stream(
                            "PUT",
                            part.url,
                            headers=headers,
                            data=_slices(data, self._ctx.config.chunk_size, touch),
                        ) as resp,
                    ):
                        await resp.read()

                await self._ctx.slot_call(send)

            await self._ctx.retrying(put_once, method="PUT", url=part.url)
            crcs[part.number] = crc

        await _gather_all([one(p) for p in parts if p.number not in done])
        await src.check_unchanged()
        whole = 0
        for part in parts:
            whole = crc32c_combine(whole, crcs[part.number], part.size)
        manifest = {
            "parts": [{"number": p.number, "crc32c": crc32c_to_b64(crcs[p.number])} for p in parts]
        }
        await self._flush_journal(key, src, notes)
        response = await self._ctx.api(
            "POST", _fpath(ticket.file_id, "/confirm-upload"), json=manifest
        )
        return self._check_confirm(response, src, whole)

    def _check_confirm(self, response: Response, src: _Source, local_crc: int) -> FileUpload:
        upload = _model(response, FileUpload)
        if upload.crc32c_hash is not None and crc32c_from_b64(upload.crc32c_hash) != local_crc:
            raise IntegrityError(
                f"The server stored {src.name!r} with CRC32C {upload.crc32c_hash}, "
                f"but {crc32c_to_b64(local_crc)} was sent"
            )
        return upload


def _warn(notes: list[str], message: str) -> None:
    logger.warning("%s", message)
    notes.append(message)


def _b64_parts(crcs: dict[int, int]) -> dict[str, str]:
    return {str(n): crc32c_to_b64(c) for n, c in crcs.items()}


async def _slices(
    data: bytes | memoryview, size: int, touch: Callable[[], None]
) -> AsyncIterator[memoryview]:
    """Hand a buffer to aiohttp in ``size`` slices, so the stall guard sees progress."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        touch()
        yield view[start : start + size]

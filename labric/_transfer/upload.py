"""Uploads: one source to one confirmed file, streamed, checksummed and resumable.

``POST upload-url`` (with the size), then either one streamed ``PUT`` (the hosted flow) or, when the
server offers parts, concurrent part ``PUT``s (:mod:`labric._transfer.parts`); then
``confirm-upload``. The whole file's CRC32C is computed while streaming a single ``PUT``, or
combined from the parts' (each checksummed just before it is sent), and compared with what the
server recorded; the CRC32C compared at confirm is always made of bytes read in this run. A file
that changes while it is sent (see :meth:`~labric._transfer.sources._Source.check_unchanged`) fails
before confirm.

Path sources are journalled (see :mod:`labric._transfer.journal`): a rerun after a crash asks
``upload-status`` and sends only the missing parts, and an upload the server has confirmed is
never sent again; what a rerun may trust of what the server holds is in
:mod:`labric._transfer.resume`. A single ``PUT`` whose answer was lost (412 on retry: the object
is stored, create-only) is confirmed instead of sent again. What fails around an upload once the
server confirmed it (the journal's disk, the progress callback) is a warning, never a failure
(:mod:`labric._transfer.bookkeeping`).

Impossible plans
    Sources over 5 TiB are refused before anything is sent, and a server's part plan is checked
    part by part (:func:`~labric._transfer.scheduling.check_part_plan`); no list as long as the
    file's part count is built before the plan was found sane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from labric._transfer.bookkeeping import _b64_parts, finished, flush_journal, record_journal
from labric._transfer.checksum import crc32c_extend, crc32c_to_b64
from labric._transfer.context import TransferContext, _fpath, _goog_crc, _model
from labric._transfer.journal import journal_key
from labric._transfer.parts import check_confirm, confirm_landed, upload_parts
from labric._transfer.progress import _Progress
from labric._transfer.resume import _Stale, read_crc, try_resume
from labric._transfer.scheduling import check_upload_size, iter_parts
from labric._transfer.sources import UploadSourceType, _Source, open_source
from labric.errors import APIStatusError, IntegrityError, TransferError
from labric.models.files import FileUpload, UploadURL
from labric.models.transfers import TransferPhase

__all__ = ["Uploader"]


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
            source,
            name=name,
            content_type=content_type,
            chunk_size=self._ctx.config.chunk_size,
            reader=self._ctx.reader(),
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
            resumed = await try_resume(self._ctx, key, src, progress, notes)
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
            await record_journal(
                self._ctx, key, {"file_id": ticket.file_id, "parts": _b64_parts(done)}
            )
            # On disk before any part is sent: a rerun after a crash finds the upload by it and
            # asks the server which parts it holds (one commit per multi-part file).
            await flush_journal(self._ctx, key, src, notes)
            result = await upload_parts(self._ctx, src, ticket, done, key, progress, notes)
        else:
            await record_journal(self._ctx, key, {"file_id": ticket.file_id, "parts": None})
            result = await self._upload_single(src, ticket, progress, key, notes)
        await finished(self._ctx, key, result, src, progress, notes, TransferPhase.COMPLETED)
        return result, False

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

        whole = src.data is not None and src.size <= chunk
        if whole:
            # Small and in memory: checksummed once and handed to aiohttp as one body, written
            # with the headers. The response's read timeout bounds a server that stops reading.
            assert src.data is not None
            crc_holder[0] = crc32c_extend(0, src.data)

        async def put_whole() -> int | None:
            headers = {**ticket.headers, "Content-Length": str(src.size)}

            async def send() -> int | None:
                async with self._ctx.transport.stream(
                    "PUT", ticket.upload_url, headers=headers, data=src.data
                ) as resp:
                    await resp.read()
                    return _goog_crc(resp.headers.get("x-goog-hash"))

            server_crc = await self._ctx.slot_call(send)
            progress.advance(src.name, src.size, src.size, src.size)
            return server_crc

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
            server_crc = await self._ctx.retrying(
                put_whole if whole else put_once, method="PUT", url=ticket.upload_url
            )
        except APIStatusError as exc:
            if exc.status_code != 412:
                raise
            # Create-only: an earlier attempt stored the object but its answer was lost.
            now = await read_crc(self._ctx, src)
            if crc_holder[0] is not None and crc_holder[0] != now:
                raise TransferError(
                    f"{src.name!r} changed while it was being uploaded; nothing was confirmed"
                ) from exc
            await src.check_unchanged()
            landed = await confirm_landed(self._ctx, ticket.file_id, src, now)
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
        await record_journal(
            self._ctx,
            key,
            {"file_id": ticket.file_id, "parts": None, "crc32c": crc32c_to_b64(local)},
        )
        await flush_journal(self._ctx, key, src, notes)
        response = await self._ctx.api("POST", _fpath(ticket.file_id, "/confirm-upload"))
        return check_confirm(response, src, local)

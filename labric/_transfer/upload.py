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

A part in flight holds its buffer (reused, see :class:`~labric._transfer.scheduling.BufferPool`)
under the shared memory budget; every request takes a limiter slot (see
:mod:`labric._transfer.context`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

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
from labric._transfer.scheduling import _gather_all, plan_parts
from labric._transfer.sources import UploadSourceType, _Source, open_source
from labric.errors import APIStatusError, IntegrityError, TransferError
from labric.models.files import FileUpload, UploadPart, UploadStatus, UploadURL
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
    ) -> tuple[FileUpload, bool]:
        """Upload one source; returns the confirmed file and whether it was already there."""
        src = await open_source(
            source, name=name, content_type=content_type, chunk_size=self._ctx.config.chunk_size
        )
        try:
            return await self._upload_source(src, attribution, progress, resume=resume)
        finally:
            src.close()

    async def _upload_source(
        self, src: _Source, attribution: dict[str, str], progress: _Progress, *, resume: bool
    ) -> tuple[FileUpload, bool]:
        progress.started_file(src.name, src.size)
        key = None
        if resume and src.identity is not None:
            key = journal_key(
                self._ctx.origin,
                self._ctx.key_prefix,
                src.name,
                attribution.get("instrument_id", ""),
                *src.identity,
            )
            resumed = await self._try_resume(key, src, progress)
            if resumed is not None:
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
            if key is not None:
                await self._ctx.journal.put("upload", key, {"file_id": ticket.file_id, "parts": {}})
            result = await self._upload_parts(src, ticket, {}, key, progress)
        else:
            if key is not None:
                await self._ctx.journal.put(
                    "upload", key, {"file_id": ticket.file_id, "parts": None}
                )
            result = await self._upload_single(src, ticket, progress, key)
        if key is not None:
            await self._ctx.journal.put(
                "upload", key, {"file_id": result.file_id, "confirmed": True}
            )
        progress.finished_file(TransferPhase.COMPLETED, src.name, src.size, src.size)
        return result, False

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

    def _skipped(self, src: _Source, progress: _Progress) -> None:
        progress.total_done += src.size
        progress.finished_file(TransferPhase.SKIPPED, src.name, src.size, src.size)

    async def _try_resume(
        self, key: str, src: _Source, progress: _Progress
    ) -> tuple[FileUpload, bool] | None:
        entry = await self._ctx.journal.get("upload", key)
        if entry is None:
            return None
        file_id = entry["file_id"]
        if entry.get("confirmed"):
            existing = await self._confirmed_upload(file_id, src)
            if existing is not None:
                self._skipped(src, progress)
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
            existing = await self._confirmed_upload(file_id, src)
            if existing is not None:
                await self._ctx.journal.put("upload", key, {"file_id": file_id, "confirmed": True})
                self._skipped(src, progress)
                return existing, True
            return None
        if entry.get("parts") is None:
            # A single PUT that may have landed before the crash: confirming tells.
            landed = await self._confirm_landed(file_id, src)
            if landed is None:
                return None  # nothing stored: start over with a fresh ticket
            await self._ctx.journal.put("upload", key, {"file_id": file_id, "confirmed": True})
            progress.total_done += src.size
            progress.finished_file(TransferPhase.COMPLETED, src.name, src.size, src.size)
            return landed, False
        # The status carries fresh URLs for the parts the server lacks; send only those.
        stored = {p.number: crc32c_from_b64(p.crc32c) for p in status.parts}
        plan = plan_parts(src.size, status.part_size or src.size or 1)
        if status.part_size is None or len(plan) != len(stored) + len(status.missing_parts):
            return None  # the file changed shape; start over
        ticket = UploadURL(
            file_id=file_id,
            upload_url="",
            expires_at="",
            part_size=status.part_size,
            parts=[
                UploadPart(number=n, offset=off, size=size, url="", headers={})
                for n, (off, size) in enumerate(plan, start=1)
                if n in stored
            ]
            + list(status.missing_parts),
        )
        done = stored
        result = await self._upload_parts(src, ticket, done, key, progress)
        await self._ctx.journal.put("upload", key, {"file_id": file_id, "confirmed": True})
        progress.finished_file(TransferPhase.COMPLETED, src.name, src.size, src.size)
        return result, False

    async def _upload_single(
        self, src: _Source, ticket: UploadURL, progress: _Progress, key: str | None
    ) -> FileUpload:
        chunk = self._ctx.config.chunk_size
        crc_holder = [0]
        sent = [0]

        async def body(touch: Callable[[], None]) -> AsyncIterator[bytes]:
            crc = 0
            for offset, length in plan_parts(src.size, chunk):
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
            server_crc = await self._ctx.transport.retrying(
                put_once, method="PUT", url=ticket.upload_url
            )
        except APIStatusError as exc:
            if exc.status_code != 412:
                raise
            # Create-only: an earlier attempt stored the object but its answer was lost.
            landed = await self._confirm_landed(ticket.file_id, src)
            if landed is None:
                raise
            return landed
        local = crc_holder[0]
        if server_crc is not None and server_crc != local:
            raise IntegrityError(
                f"Upload of {src.name!r} was corrupted in transit (CRC32C "
                f"{crc32c_to_b64(local)} sent, {crc32c_to_b64(server_crc)} stored)"
            )
        if key is not None:
            await self._ctx.journal.flush()  # the file id is on disk before the upload can finish
        response = await self._ctx.api("POST", _fpath(ticket.file_id, "/confirm-upload"))
        return self._check_confirm(response, src, local)

    async def _confirm_landed(self, file_id: str, src: _Source) -> FileUpload | None:
        """Confirm an upload whose bytes may be stored already; ``None`` when they are not.

        The source is read once more to check the stored CRC32C (this only happens when a PUT's
        answer was lost or a run was interrupted between PUT and confirm).
        """
        try:
            response = await self._ctx.api("POST", _fpath(file_id, "/confirm-upload"))
        except APIStatusError as exc:
            if exc.status_code in (400, 404, 409):
                return None
            raise
        crc = 0
        for offset, length in plan_parts(src.size, self._ctx.config.chunk_size):
            crc = crc32c_extend(crc, await src.read(offset, length))
        return self._check_confirm(response, src, crc)

    async def _upload_parts(
        self,
        src: _Source,
        ticket: UploadURL,
        done: dict[int, int],
        key: str | None,
        progress: _Progress,
    ) -> FileUpload:
        assert ticket.parts is not None
        parts = sorted(ticket.parts, key=lambda p: p.number)
        covered = sum(p.size for p in parts)
        if covered != src.size or plan_parts(src.size, ticket.part_size or src.size or 1) != [
            (p.offset, p.size) for p in parts
        ]:
            raise TransferError("The server's part plan does not cover the file exactly")
        crcs: dict[int, int] = dict(done)
        already = sum(p.size for p in parts if p.number in done)
        progress.advance(src.name, already, already, src.size)
        sent = [already]

        async def one(part: Any) -> None:
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
            if key is not None:
                await self._ctx.journal.put(
                    "upload",
                    key,
                    {
                        "file_id": ticket.file_id,
                        "parts": {str(n): crc32c_to_b64(c) for n, c in crcs.items()},
                    },
                )

        async def send_part(part: Any, buffer: bytearray | None) -> None:
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

            await self._ctx.transport.retrying(put_once, method="PUT", url=part.url)
            crcs[part.number] = crc

        todo = [p for p in parts if p.number not in done]
        await _gather_all([one(p) for p in todo])
        whole = 0
        for part in parts:
            whole = crc32c_combine(whole, crcs[part.number], part.size)
        manifest = {
            "parts": [{"number": p.number, "crc32c": crc32c_to_b64(crcs[p.number])} for p in parts]
        }
        if key is not None:
            await self._ctx.journal.flush()
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


async def _slices(
    data: bytes | memoryview, size: int, touch: Callable[[], None]
) -> AsyncIterator[memoryview]:
    """Hand a buffer to aiohttp in ``size`` slices, so the stall guard sees progress."""
    view = memoryview(data)
    for start in range(0, len(view), size):
        touch()
        yield view[start : start + size]

"""Sending the parts of a multipart upload, and confirming an upload against its CRC32C.

When the server offers parts, they are sent as concurrent ``PUT`` requests
(:func:`upload_parts`), each read with ``os.pread`` off the event loop, checksummed and sent with
``x-goog-hash``; the whole file's CRC32C is combined from the parts' (never a second read) and
sent with their CRC32Cs to ``confirm-upload``. Every confirm is checked (:func:`check_confirm`):
the CRC32C the server recorded must be the one computed from the bytes read in this run.

A server's part plan is checked part by part first
(:func:`~labric._transfer.scheduling.check_part_plan`). A part in flight holds its buffer
(reused, see :class:`~labric._transfer.scheduling.BufferPool`) under the shared memory budget,
plus one slice copied into the socket's buffer; every request takes a limiter slot (see
:mod:`labric._transfer.context`). A body is handed to aiohttp in ``chunk_size`` slices so the stall
guard sees it move. Each sent part is journalled, so an interrupted upload resumes with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from labric._core.transport import Response
from labric._transfer.bookkeeping import _b64_parts, flush_journal, record_journal
from labric._transfer.checksum import crc32c_combine, crc32c_from_b64, crc32c_to_b64
from labric._transfer.context import TransferContext, _fpath, _model
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import _gather_all, check_part_plan
from labric._transfer.sources import _Source
from labric.errors import APIStatusError, IntegrityError
from labric.models.files import FileUpload, UploadPart, UploadURL

__all__ = ["check_confirm", "confirm_landed", "upload_parts"]


async def upload_parts(
    ctx: TransferContext,
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
        async with ctx.memory.reserve(part.size + min(part.size, ctx.config.chunk_size)):
            buffer = None if src.data is not None else ctx.buffers.take(part.size)
            try:
                await send_part(part, buffer)
            finally:
                if buffer is not None:
                    ctx.buffers.give(buffer)
        sent[0] += part.size
        progress.advance(src.name, part.size, sent[0], src.size)
        await record_journal(ctx, key, {"file_id": ticket.file_id, "parts": _b64_parts(crcs)})

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
                    ctx.stall_guard("PUT", part.url) as touch,
                    ctx.transport.stream(
                        "PUT",
                        part.url,
                        headers=headers,
                        data=_slices(data, ctx.config.chunk_size, touch),
                    ) as resp,
                ):
                    await resp.read()

            await ctx.slot_call(send)

        await ctx.retrying(put_once, method="PUT", url=part.url)
        crcs[part.number] = crc

    await _gather_all([one(p) for p in parts if p.number not in done])
    await src.check_unchanged()
    whole = 0
    for part in parts:
        whole = crc32c_combine(whole, crcs[part.number], part.size)
    manifest = {
        "parts": [{"number": p.number, "crc32c": crc32c_to_b64(crcs[p.number])} for p in parts]
    }
    await flush_journal(ctx, key, src, notes)
    response = await ctx.api("POST", _fpath(ticket.file_id, "/confirm-upload"), json=manifest)
    return check_confirm(response, src, whole)


async def confirm_landed(
    ctx: TransferContext, file_id: str, src: _Source, crc: int
) -> FileUpload | None:
    """Confirm an upload whose bytes may be stored already; ``None`` when they are not.

    ``crc`` is the CRC32C of the source read in this run; the server's must equal it.
    """
    try:
        response = await ctx.api("POST", _fpath(file_id, "/confirm-upload"))
    except APIStatusError as exc:
        if exc.status_code in (400, 404, 409):
            return None
        raise
    return check_confirm(response, src, crc)


def check_confirm(response: Response, src: _Source, local_crc: int) -> FileUpload:
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

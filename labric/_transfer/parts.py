"""Sending the parts of a multipart upload, and confirming an upload against its CRC32C.

When the server offers parts, they are sent as concurrent ``PUT`` requests
(:func:`upload_parts`), each with its CRC32C in ``x-goog-hash``; the whole file's CRC32C is
combined from the parts' and sent with them to ``confirm-upload``. Every confirm is checked
(:func:`check_confirm`): the CRC32C the server recorded must be the one computed from the bytes
read in this run.

Streamed parts (a file on disk)
    A part is read twice through the page cache instead of being buffered: once to checksum it (one
    hop to the client's file-reading thread per part, each chunk dropped once counted), then again
    chunk by chunk as the request body. A part in flight so holds about two chunks, whatever the
    part size, and an upload's memory is flat in the file's size. The server verifies every part's
    bytes against its ``x-goog-hash``, so a file rewritten between the two reads is refused (400),
    never stored as a mix; the refusal is then explained as the file having changed
    (:func:`_changed_since_checksum`). The file's stamp is checked again before confirm.

Buffered parts (bytes, file objects)
    A part in flight holds its buffer (reused, see
    :class:`~labric._transfer.scheduling.BufferPool`) under the shared memory budget, plus one
    slice copied into the socket's buffer; bytes are sliced without a copy.

A server's part plan is checked part by part first
(:func:`~labric._transfer.scheduling.check_part_plan`). Every request takes a limiter slot (see
:mod:`labric._transfer.context`). A body is handed to aiohttp in ``chunk_size`` pieces so the
stall guard sees it move. Each sent part is journalled, so an interrupted upload resumes with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from labric._core.transport import Response
from labric._transfer.bookkeeping import _b64_parts, flush_journal, record_journal
from labric._transfer.checksum import crc32c_combine, crc32c_from_b64, crc32c_to_b64
from labric._transfer.context import TransferContext, _fpath, _model
from labric._transfer.progress import _Progress
from labric._transfer.scheduling import _gather_bounded, check_part_plan
from labric._transfer.sources import _Source
from labric.errors import APIStatusError, IntegrityError, TransferError
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
    # Grown one part at a time and handed to the journal as is (encoded when written), so a
    # many-part upload does not re-encode every part's CRC32C after each part.
    journalled = _b64_parts(crcs)
    already = sum(p.size for p in parts if p.number in done)
    progress.advance(src.name, already, already, src.size)
    sent = [already]

    chunk = ctx.config.chunk_size

    async def one(part: UploadPart) -> None:
        if src.streams:
            # Checksummed, then sent, from the file: a chunk read ahead plus one in the
            # socket's buffer is all a part holds.
            async with ctx.memory.reserve(2 * min(part.size, chunk)):
                crc = await src.range_crc(part.offset, part.size, chunk)
                await send_part(part, crc, None)
        else:
            # A part in flight holds its buffer, plus one slice copied into the socket's buffer.
            async with ctx.memory.reserve(part.size + min(part.size, chunk)):
                buffer = None if src.data is not None else ctx.buffers.take(part.size)
                try:
                    data, crc = await src.read_part(part.offset, part.size, buffer)
                    await send_part(part, crc, data)
                finally:
                    if buffer is not None:
                        ctx.buffers.give(buffer)
        crcs[part.number] = crc
        journalled[str(part.number)] = crc32c_to_b64(crc)
        sent[0] += part.size
        progress.advance(src.name, part.size, sent[0], src.size)
        await record_journal(ctx, key, {"file_id": ticket.file_id, "parts": journalled})

    async def send_part(part: UploadPart, crc: int, data: memoryview | None) -> None:
        """PUT one part: ``data`` when buffered, else streamed from the file."""
        headers = {
            **part.headers,
            "Content-Length": str(part.size),
            "x-goog-hash": f"crc32c={crc32c_to_b64(crc)}",
        }

        async def put_once() -> None:
            async def send() -> None:
                async with ctx.stall_guard("PUT", part.url) as touch:
                    body = (
                        _slices(data, chunk, touch)
                        if data is not None
                        else src.stream(part.offset, part.size, chunk, touch)
                    )
                    async with ctx.transport.stream(
                        "PUT", part.url, headers=headers, data=body
                    ) as resp:
                        await resp.read()

            await ctx.slot_call(send)

        try:
            await ctx.retrying(put_once, method="PUT", url=part.url)
        except APIStatusError as exc:
            if exc.status_code == 400 and data is None:
                await _changed_since_checksum(src, part, crc, chunk, exc)
            raise

    # As many parts at once as requests may be in flight: a part is checksummed just before it
    # is sent (still in the page cache), and no more coroutines wait than can send.
    todo = (p for p in parts if p.number not in done)
    await _gather_bounded(todo, one, ctx.limiter.ceiling)
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


async def _changed_since_checksum(
    src: _Source, part: UploadPart, crc: int, chunk: int, refusal: APIStatusError
) -> None:
    """Explain a streamed part the server refused: the file changed since it was checksummed.

    A part is read twice (checksum, then send); the server refuses (400) bytes that do not match
    the checksum sent ahead of them. When the file's stamp or the part's bytes moved meanwhile,
    that is the cause, and it is said so; otherwise the refusal stands as it is.
    """
    await src.check_unchanged()
    if await src.range_crc(part.offset, part.size, chunk) != crc:
        raise TransferError(
            f"{src.name!r} changed while it was being uploaded (part {part.number} no longer "
            "holds the bytes it was checksummed with); nothing was confirmed. Upload it again "
            "once nothing writes to it."
        ) from refusal


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

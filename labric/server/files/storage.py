"""Storage routes: the GCS-like object store behind signed URLs (no API key).

Routes::

    PUT       /storage/v1/objects/{file_id}                 one PUT of a whole object
    PUT       /storage/v1/objects/{file_id}/parts/{number}  one part of a multipart upload
    GET/HEAD  /storage/v1/objects/{file_id}                 download, with single ranges

Every request is authorised by its signature (:mod:`labric.server.core.signing`): 403 when it is
missing, tampered with or expired, or when a signed header is absent or different.

Uploads stream the body in the socket's chunks, batch them into multi-MiB vectored writes handed
to the disk threads (one write in flight while the next chunks arrive) and checksum on the way;
an object becomes visible only by an atomic rename (see :mod:`labric.server.core.blobs`). A
single PUT is create-only (``x-goog-if-generation-match: 0``: 412 when an object is already
stored), is limited by its signed ``x-goog-content-length-range`` (400) and by the server's
single-PUT cap (413), and verifies ``x-goog-hash: crc32c=...`` when sent (400 on a mismatch).

A part must have exactly its planned size. The first part PUT of an upload creates its upload file;
each part is written in place at its offset, verified against ``x-goog-hash``, and recorded (synced
in the background, and before confirming: see :mod:`labric.server.core.blobs`). Re-sending a
recorded part with the same bytes changes nothing; with other bytes it replaces the earlier copy
(received aside first, so a bad re-send leaves the good copy alone). A PUT of a part that another
PUT of the same part is still writing takes over: the older one answers 409. While the upload is
being confirmed, part PUTs answer 409.

Downloads answer ``ETag`` (strong; changes with the object's generation), ``x-goog-hash`` of the
whole object, ``Accept-Ranges``, single ``Range`` requests (206, or 416 when unsatisfiable) and
``If-Match`` (412) / ``If-None-Match`` (304) / ``If-Range``. Without active faults the bytes go
out with ``sendfile``; with faults they are streamed in small chunks through the injector's
``pace``. Either way a client that stops taking them is dropped after the send timeout (the
server's ``body_timeout``), so a stalled reader cannot hold a connection and an open file.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import quote

import attrs
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from labric.server.core import records
from labric.server.core.blobs import (
    PartClaim,
    PartSuperseded,
    PartWriter,
    TempBlob,
    UploadFile,
    UploadSealed,
    crc32c_b64,
    decode_crc32c,
)
from labric.server.core.declare import (
    FILE_ID,
    PUBLIC,
    STRING,
    Operation,
    Param,
    Response,
    ref,
    string,
)
from labric.server.core.faults import pace
from labric.server.core.http import HTTPError, json_response
from labric.server.core.routing import Router, Routes
from labric.server.core.signing import SignatureError
from labric.server.core.state import SEND_TIMEOUT, STATE, ServerState
from labric.server.files import storage_wire
from labric.server.files.common import plan_parts

__all__ = ["byte_range", "register"]

logger = logging.getLogger("labric.server")

#: Bytes collected from the socket before one write is handed to a disk thread.
WRITE_BATCH = 4 * 1024 * 1024
#: The most socket chunks one write takes (one vectored call, whatever their sizes).
WRITE_BATCH_CHUNKS = 256
#: Bytes per read when streaming a download without sendfile.
SEND_CHUNK = 1024 * 1024
#: Bytes per read when streaming a download through the fault injector's pacing.
PACED_CHUNK = 64 * 1024
#: Bytes handed to ``sendfile`` at once. A client must take each segment within the send timeout
#: (at the default 60 s: a client slower than about 35 KB/s is cut off); smaller segments would
#: cost throughput, one await each.
SEND_SEGMENT = 2 * 1024 * 1024

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LENGTH_RANGE_RE = re.compile(r"^(\d+),(\d+)$")


ROUTES = Routes(storage_wire.STORAGE)


class Unsatisfiable(Exception):
    """A syntactically valid range that selects no byte of the object."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Resolve a ``Range`` header against a ``size``-byte object.

    Returns:
        ``(first, last)`` inclusive, or ``None`` to serve the whole object (no header, or one
        that is malformed or asks for several ranges; RFC 9110 lets a server ignore those).

    Raises:
        Unsatisfiable: the range starts past the end (or is an empty suffix).
    """
    if header is None:
        return None
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def _etag_list(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _verify(state: ServerState, request: web.Request) -> None:
    try:
        state.signer.verify(
            request.method, request.rel_url.raw_path, request.query, request.headers
        )
    except SignatureError as exc:
        raise HTTPError(403, str(exc), close=True) from None


def _goog_crc32c(request: web.Request) -> str | None:
    """The ``crc32c`` of ``x-goog-hash`` headers, validated; ``None`` when not sent."""
    found: str | None = None
    for header in request.headers.getall("x-goog-hash", []):
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            if name.strip().lower() != "crc32c":
                continue
            value = value.strip()
            if decode_crc32c(value) is None:
                raise HTTPError(400, "x-goog-hash crc32c must be the base64 of 4 bytes", close=True)
            found = value
    return found


async def _receive(
    request: web.Request,
    state: ServerState,
    blob: TempBlob | PartWriter,
    file_id: str,
    *,
    limit: int,
    too_large: HTTPError,
) -> int:
    """Stream the request body into ``blob``; return its size. Raises ``too_large`` past
    ``limit`` bytes."""
    paced = state.injector.config.active
    batch: list[bytes] = []
    batched = 0
    total = 0
    try:
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            total += len(chunk)
            state.stats.received(file_id, len(chunk))
            if total > limit:
                raise too_large
            if paced:
                await pace(request, len(chunk))
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH or len(batch) >= WRITE_BATCH_CHUNKS:
                await blob.write(batch)
                batch, batched = [], 0
    except HttpProcessingError as exc:
        raise HTTPError(
            400, f"The request body is malformed or ended early: {exc.message}", close=True
        ) from None
    if batch:
        await blob.write(batch)
    return total


@ROUTES.route(
    Operation(
        method="PUT",
        path="/storage/v1/objects/{file_id}",
        scope=PUBLIC,
        storage=True,
        summary="Store a whole object (create-only; signed URL)",
        params=(
            FILE_ID,
            *storage_wire.SIGNATURE,
            Param(name="x-goog-if-generation-match", where="header"),
            Param(name="x-goog-content-length-range", where="header"),
            Param(name="x-goog-hash", where="header", description="crc32c=<base64>"),
        ),
        body=storage_wire.PUT_BODY,
        responses=(Response(schema=ref("StoredObject"), headers=storage_wire.OBJECT_HEADERS),),
        errors={
            400: "Size outside the signed range, a malformed header, a checksum mismatch",
            403: "The signature is missing, tampered with or expired",
            404: "No such upload",
            412: "An object is already stored for this upload",
            413: "Over the single-PUT limit",
        },
    )
)
async def put_object(request: web.Request) -> web.StreamResponse:
    """``PUT /storage/v1/objects/{file_id}``: store a whole object, create-only."""
    state = request.app[STATE]
    _verify(state, request)
    file_id = request.match_info["file_id"]
    state.stats.put(file_id, None)
    row = await state.db.run(records.file_get, file_id)
    if row is None:
        raise HTTPError(404, f"No upload {file_id}", close=True)
    exists = HTTPError(
        412, "An object is already stored for this upload (the URL only creates)", close=True
    )
    if row.status == "confirmed" or row.generation != 0:
        raise exists
    low, high = 0, state.settings.max_single_put
    length_range = request.headers.get("x-goog-content-length-range")
    if length_range is not None:
        match = _LENGTH_RANGE_RE.match(length_range.replace(" ", ""))
        if match is None:
            raise HTTPError(400, "x-goog-content-length-range must be 'min,max'", close=True)
        low, high = int(match.group(1)), int(match.group(2))
    cap = state.settings.max_single_put
    too_large = HTTPError(
        413, f"The object is over the {cap}-byte limit of a single upload", close=True
    )
    out_of_range = HTTPError(
        400, f"The body size is outside the signed range {low}..{high} bytes", close=True
    )
    declared = request.content_length
    if declared is not None:
        if declared > cap:
            raise too_large
        if not low <= declared <= high:
            raise out_of_range
    expected_crc = _goog_crc32c(request)
    blob = state.blobs.writer()
    try:
        size = await _receive(
            request,
            state,
            blob,
            file_id,
            limit=min(cap, high),
            too_large=too_large if cap <= high else out_of_range,
        )
        if size < low:
            raise out_of_range
        size, digest = blob.checksum()
        crc = crc32c_b64(digest)
        if expected_crc is not None and crc != expected_crc:
            raise HTTPError(
                400,
                f"x-goog-hash crc32c {expected_crc} does not match the body's "
                f"{crc}; nothing was stored",
            )
        generation = state.blobs.new_generation()
        dest = state.blobs.object_path(file_id, generation)
        await blob.finish(install=dest)  # synced, renamed into place, directory synced
    except BaseException:
        blob.abort()
        raise
    outcome = "missing"
    try:
        outcome = await state.db.run(records.claim_object, file_id, generation, size, crc)
    finally:
        if outcome != "ok":
            await state.blobs.remove([dest])
    if outcome == "exists":
        raise HTTPError(412, "An object is already stored for this upload (the URL only creates)")
    if outcome == "missing":
        raise HTTPError(404, f"No upload {file_id}")
    return json_response(
        {"file_id": file_id, "size_bytes": size, "crc32c": crc, "generation": str(generation)},
        headers=_object_headers(generation, crc),
    )


@ROUTES.route(
    Operation(
        method="PUT",
        path="/storage/v1/objects/{file_id}/parts/{number}",
        scope=PUBLIC,
        storage=True,
        summary="Store (or replace) one part of a multipart upload (signed URL)",
        params=(
            FILE_ID,
            Param(
                name="number",
                where="path",
                schema=string(pattern="^[0-9]{1,9}$"),
                required=True,
            ),
            *storage_wire.SIGNATURE,
            Param(name="x-goog-hash", where="header", description="crc32c=<base64>"),
        ),
        body=storage_wire.PUT_BODY,
        responses=(Response(schema=ref("StoredPart"), headers={"x-goog-hash": STRING}),),
        errors={
            400: "Not in the plan, the wrong size, a checksum mismatch",
            403: "The signature is missing, tampered with or expired",
            404: "No such upload",
            409: "The upload is confirmed or being confirmed, or a newer PUT took over",
        },
    )
)
async def put_part(request: web.Request) -> web.StreamResponse:
    """``PUT /storage/v1/objects/{file_id}/parts/{number}``: store (or replace) one part."""
    state = request.app[STATE]
    _verify(state, request)
    file_id = request.match_info["file_id"]
    number = int(request.match_info["number"])
    state.stats.put(file_id, number)
    row = await state.db.run(records.file_get, file_id)
    if row is None:
        raise HTTPError(404, f"No upload {file_id}", close=True)
    if row.status == "confirmed":
        raise HTTPError(409, "This upload is already confirmed", close=True)
    if row.part_size is None or row.expected_size is None:
        raise HTTPError(400, "This upload has no part plan", close=True)
    plan = plan_parts(row.expected_size, row.part_size)
    if not 1 <= number <= len(plan):
        raise HTTPError(
            400, f"Part {number} is not in this upload's plan of {len(plan)}", close=True
        )
    _, offset, expected = plan[number - 1]
    part = _Part(
        number=number,
        offset=offset,
        size=expected,
        crc32c=_goog_crc32c(request),
        wrong_size=HTTPError(400, f"Part {number} must be exactly {expected} bytes", close=True),
    )
    if request.content_length is not None and request.content_length != expected:
        raise part.wrong_size
    generation = row.upload_generation or await _create_upload(state, row)
    try:
        async with state.blobs.open_upload(file_id, generation) as upload:
            claim = await upload.claim(number)
            try:
                held = await state.db.run(records.part_get, file_id, number)
                if held is not None and held.generation == generation:
                    crc = await _replace_part(request, state, upload, claim, part)
                else:
                    crc = await _write_part(request, state, upload, claim, part)
            finally:
                claim.release()
    except UploadSealed:
        raise HTTPError(
            409,
            "This upload is being confirmed, or was confirmed, re-planned or deleted meanwhile",
            close=True,
        ) from None
    except PartSuperseded:
        raise HTTPError(
            409, f"A newer PUT of part {number} took over from this one", close=True
        ) from None
    return json_response(
        {"file_id": file_id, "number": number, "size": expected, "crc32c": crc},
        headers={"x-goog-hash": f"crc32c={crc}"},
    )


@attrs.frozen(kw_only=True)
class _Part:
    """The part a request sends: its place in the plan and the checksum it claims."""

    number: int
    offset: int
    size: int
    crc32c: str | None
    wrong_size: HTTPError


def _changed(outcome: str, file_id: str) -> HTTPError:
    if outcome == "missing":
        return HTTPError(404, f"No upload {file_id}")
    return HTTPError(409, "This upload was confirmed or re-planned meanwhile")


async def _create_upload(state: ServerState, row: records.FileRow) -> int:
    """The generation of the upload file of ``row``'s plan, created by the first part PUT."""
    part_size, expected_size = row.part_size, row.expected_size
    assert part_size is not None
    assert expected_size is not None
    async with state.file_locks.hold(("upload file", row.id)):
        current = await state.db.run(records.file_get, row.id)
        if current is None:
            raise HTTPError(404, f"No upload {row.id}", close=True)
        if current.status != "pending" or (current.part_size, current.expected_size) != (
            part_size,
            expected_size,
        ):
            raise HTTPError(409, "This upload was confirmed or re-planned meanwhile", close=True)
        if current.upload_generation:
            return current.upload_generation
        generation = await state.blobs.create_upload(row.id, expected_size)
        recorded = False
        try:
            recorded = await state.db.run(
                lambda conn: records.set_upload_generation(
                    conn, row.id, generation, part_size=part_size, expected_size=expected_size
                )
            )
        finally:
            if not recorded:
                await state.blobs.remove([state.blobs.upload_path(row.id, generation)])
        if not recorded:
            raise HTTPError(409, "This upload was confirmed or re-planned meanwhile", close=True)
        return generation


def _checked(crc: str, part: _Part, kept: str) -> str:
    if part.crc32c is not None and crc != part.crc32c:
        raise HTTPError(
            400,
            f"x-goog-hash crc32c {part.crc32c} does not match part {part.number}'s {crc}; "
            f"the part was not stored{kept}",
        )
    return crc


async def _write_part(
    request: web.Request, state: ServerState, upload: UploadFile, claim: PartClaim, part: _Part
) -> str:
    """Stream a part not stored yet straight into its range; sync; record. Returns its CRC32C."""
    writer = upload.writer(claim, part.offset)
    try:
        size = await _receive(
            request, state, writer, upload.file_id, limit=part.size, too_large=part.wrong_size
        )
        if size != part.size:
            raise part.wrong_size
        size, digest = await writer.finish()
    except BaseException:
        writer.abort()
        raise
    crc = _checked(crc32c_b64(digest), part, "")
    # Recorded as written, not synced: the answer does not wait for a sync of the whole file
    # (which other parts' writes would make ever longer). A background sync covers it soon
    # and marks it synced; publishing syncs the file anyway (see labric.server.core.blobs).
    await _record_part(state, upload, claim, part, crc, synced=False)
    file_id, generation, db = upload.file_id, upload.generation, state.db
    upload.part_written(
        part.number,
        crc,
        lambda parts: db.post(records.mark_parts_synced, file_id, generation, parts),
    )
    return crc


async def _replace_part(
    request: web.Request, state: ServerState, upload: UploadFile, claim: PartClaim, part: _Part
) -> str:
    """Receive a re-sent recorded part aside; if its bytes differ from the stored copy, forget
    that copy durably, copy the new bytes into the range, sync, record. Returns its CRC32C."""
    blob = state.blobs.writer()
    try:
        size = await _receive(
            request, state, blob, upload.file_id, limit=part.size, too_large=part.wrong_size
        )
        if size != part.size:
            raise part.wrong_size
        size, digest = await blob.finish(durable=False)
        crc = _checked(crc32c_b64(digest), part, " (the copy stored before is kept)")
        generation = upload.generation

        def forget(conn: Any) -> str:
            current = records.file_get(conn, upload.file_id)
            if current is None:
                return "missing"
            if current.status != "pending" or current.upload_generation != generation:
                return "changed"
            held = records.part_get(conn, upload.file_id, part.number)
            if held is not None and held.crc32c == crc and held.size == size:
                return "same"
            records.delete_part(conn, upload.file_id, part.number)
            return "ok"

        # Durable: a power cut must not bring the record back over half-replaced bytes.
        outcome = await upload.guard(claim, lambda: state.db.run_durable(forget))
        if outcome == "same":
            return crc  # the same bytes again: nothing to change
        if outcome != "ok":
            raise _changed(outcome, upload.file_id)
        await state.blobs.copy_into(upload, claim, blob.path, part.offset, size)
        await _record_part(state, upload, claim, part, crc)
        return crc
    finally:
        blob.abort()


async def _record_part(
    state: ServerState,
    upload: UploadFile,
    claim: PartClaim,
    part: _Part,
    crc: str,
    *,
    synced: bool = True,
) -> None:
    """Record a part whose bytes are written to ``upload``'s file (and ``synced`` or not)."""
    file_id, generation = upload.file_id, upload.generation

    def record(conn: Any) -> str:
        current = records.file_get(conn, file_id)
        if current is None:
            return "missing"
        if current.status != "pending" or current.upload_generation != generation:
            return "changed"
        records.put_part(conn, file_id, part.number, part.size, crc, generation, synced=synced)
        return "ok"

    outcome = await upload.guard(claim, lambda: state.db.run(record))
    if outcome != "ok":
        raise _changed(outcome, file_id)


def _object_headers(generation: int, crc: str) -> dict[str, str]:
    return {
        "ETag": _etag(generation, crc),
        "x-goog-hash": f"crc32c={crc}",
        "x-goog-generation": str(generation),
    }


def _etag(generation: int, crc: str) -> str:
    digest = decode_crc32c(crc) or b""
    return f'"{generation:x}-{digest.hex()}"'


@ROUTES.route(storage_wire.download("GET"))
@ROUTES.route(storage_wire.download("HEAD"))
async def get_object(request: web.Request) -> web.StreamResponse:
    """``GET``/``HEAD /storage/v1/objects/{file_id}``: the object's bytes, or a range of them."""
    state = request.app[STATE]
    _verify(state, request)
    file_id = request.match_info["file_id"]
    row = await state.db.run(records.file_get, file_id)
    if row is None or row.generation == 0 or row.size_bytes is None or row.crc32c is None:
        raise HTTPError(404, f"No object {file_id}")
    try:
        f = await state.blobs.open_read(state.blobs.object_path(file_id, row.generation))
    except FileNotFoundError:
        raise HTTPError(404, f"No object {file_id}") from None
    try:
        return await _send(request, state, row, f)
    finally:
        f.close()


async def _send(
    request: web.Request, state: ServerState, row: records.FileRow, f: Any
) -> web.StreamResponse:
    assert row.size_bytes is not None
    assert row.crc32c is not None
    size = row.size_bytes
    headers = _object_headers(row.generation, row.crc32c)
    etag = headers["ETag"]
    headers.update(
        {
            "Accept-Ranges": "bytes",
            "Content-Type": row.content_type,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(row.file_name)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=0",
            "x-goog-stored-content-length": str(size),
        }
    )
    if_match = request.headers.get("If-Match")
    if if_match is not None and not any(t in ("*", etag) for t in _etag_list(if_match)):
        raise HTTPError(
            412, "The object changed: If-Match does not match its ETag", headers={"ETag": etag}
        )
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and any(
        t == "*" or t.removeprefix("W/") == etag for t in _etag_list(if_none_match)
    ):
        return web.Response(status=304, headers={"ETag": etag})
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's copy is stale: send the whole object
    try:
        selected = byte_range(range_header, size)
    except Unsatisfiable:
        raise HTTPError(
            416,
            f"The range is outside the object's {size} bytes",
            headers={"Content-Range": f"bytes */{size}", "ETag": etag},
        ) from None
    if selected is None:
        status, start, length = 200, 0, size
    else:
        status, start, length = 206, selected[0], selected[1] - selected[0] + 1
        headers["Content-Range"] = f"bytes {selected[0]}-{selected[1]}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    if request.method == "HEAD" or length == 0:
        await response.write_eof()
        return response
    # From here on the status line is out: failures cut the body short (the client sees a
    # length mismatch) and close the connection, instead of raising into the middlewares.
    try:
        await _send_body(request, state, response, f, start, length)
        state.stats.sent(length)
        await response.write_eof()
    except (ConnectionError, HttpProcessingError):
        response.force_close()
    except TimeoutError:
        # The client stopped reading (a slow-read attack, or a dead peer that never said so):
        # drop the connection now, with whatever the kernel still holds for it.
        logger.info(
            "Closing the download of %s: its client took nothing for %.3g s",
            row.id,
            request.app[SEND_TIMEOUT],
        )
        response.force_close()
        if request.transport is not None:
            request.transport.abort()
    except Exception:
        logger.exception("Sending %s failed", row.id)
        response.force_close()
        if request.transport is not None:
            request.transport.close()
    return response


async def _send_body(
    request: web.Request,
    state: ServerState,
    response: web.StreamResponse,
    f: Any,
    start: int,
    length: int,
) -> None:
    stall = request.app[SEND_TIMEOUT]
    paced = state.injector.config.active
    offset, remaining = start, length
    if not paced:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        loop = asyncio.get_running_loop()
        try:
            # In segments, each under the send timeout: one sendfile for the whole object would
            # wait for ever on a client that stops reading.
            while remaining:
                size = min(SEND_SEGMENT, remaining)
                async with asyncio.timeout(stall):
                    await loop.sendfile(transport, f, offset, size, fallback=False)
                offset += size
                remaining -= size
            return
        except asyncio.SendfileNotAvailableError:
            pass  # e.g. TLS (raised before a byte is sent): stream through the disk threads
    chunk_size = PACED_CHUNK if paced else SEND_CHUNK
    while remaining:
        chunk = await state.blobs.read_at(f, offset, min(chunk_size, remaining))
        if not chunk:
            raise OSError("the stored object is shorter than its record")
        if paced:
            # Before the write: a reset drawn within this chunk must cut the body short, not
            # come after the client may have had all of it.
            await pace(request, len(chunk), total=length)
        async with asyncio.timeout(stall):
            await response.write(chunk)
        offset += len(chunk)
        remaining -= len(chunk)


def register(router: Router) -> None:
    """Add the storage routes."""
    router.add(ROUTES)

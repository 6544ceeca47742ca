"""Storage routes: the GCS-like object store behind signed URLs (no API key).

Routes::

    PUT       /storage/v1/objects/{file_id}                 one PUT of a whole object
    PUT       /storage/v1/objects/{file_id}/parts/{number}  one part of a multipart upload
    GET/HEAD  /storage/v1/objects/{file_id}                 download, with single ranges

Every request is authorised by its signature (:mod:`labric.server.signing`): 403 when it is
missing, tampered with or expired, or when a signed header is absent or different.

Uploads stream the body in the socket's chunks, batch them into multi-MiB writes handed to the
disk threads (one write in flight while the next chunk arrives) and checksum on the way; the
object becomes visible only by an atomic rename (see :mod:`labric.server.blobs`). A single PUT
is create-only (``x-goog-if-generation-match: 0``: 412 when an object is already stored), is
limited by its signed ``x-goog-content-length-range`` (400) and by the server's single-PUT cap
(413), and verifies ``x-goog-hash: crc32c=...`` when sent (400 on a mismatch). A part must have
exactly its planned size; re-sending a part replaces the earlier copy atomically.

Downloads answer ``ETag`` (strong; changes with the object's generation), ``x-goog-hash`` of the
whole object, ``Accept-Ranges``, single ``Range`` requests (206, or 416 when unsatisfiable) and
``If-Match`` (412) / ``If-None-Match`` (304) / ``If-Range``. Without active faults the bytes go
out with ``sendfile``; with faults they are streamed in small chunks through the injector's
``pace``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from labric.server import records
from labric.server._http import HTTPError, json_response
from labric.server.blobs import TempBlob, crc32c_b64, decode_crc32c
from labric.server.faults import pace
from labric.server.routes._common import STORAGE_PREFIX, plan_parts
from labric.server.routing import Router
from labric.server.signing import SignatureError
from labric.server.state import STATE, ServerState

__all__ = ["byte_range", "register"]

logger = logging.getLogger("labric.server")

#: Bytes collected from the socket before one write is handed to a disk thread.
WRITE_BATCH = 4 * 1024 * 1024
#: Bytes per read when streaming a download without sendfile.
SEND_CHUNK = 1024 * 1024
#: Bytes per read when streaming a download through the fault injector's pacing.
PACED_CHUNK = 64 * 1024

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LENGTH_RANGE_RE = re.compile(r"^(\d+),(\d+)$")


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
    blob: TempBlob,
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
            if batched >= WRITE_BATCH:
                await blob.write(b"".join(batch))
                batch, batched = [], 0
    except HttpProcessingError as exc:
        raise HTTPError(
            400, f"The request body is malformed or ended early: {exc.message}", close=True
        ) from None
    if batch:
        await blob.write(b"".join(batch))
    return total


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
        size, digest = await blob.finish()
        crc = crc32c_b64(digest)
        if expected_crc is not None and crc != expected_crc:
            raise HTTPError(
                400,
                f"x-goog-hash crc32c {expected_crc} does not match the body's "
                f"{crc}; nothing was stored",
            )
        generation = state.blobs.new_generation()
        dest = state.blobs.object_path(file_id, generation)
        await blob.install(dest)
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
    expected = plan[number - 1][2]
    wrong_size = HTTPError(400, f"Part {number} must be exactly {expected} bytes", close=True)
    if request.content_length is not None and request.content_length != expected:
        raise wrong_size
    expected_crc = _goog_crc32c(request)
    blob = state.blobs.writer()
    try:
        size = await _receive(request, state, blob, file_id, limit=expected, too_large=wrong_size)
        if size != expected:
            raise wrong_size
        size, digest = await blob.finish()
        crc = crc32c_b64(digest)
        if expected_crc is not None and crc != expected_crc:
            raise HTTPError(
                400,
                f"x-goog-hash crc32c {expected_crc} does not match part "
                f"{number}'s {crc}; the part was not stored",
            )
        generation = state.blobs.new_generation()
        dest = state.blobs.part_path(file_id, number, generation)
        await blob.install(dest)
    except BaseException:
        blob.abort()
        raise

    def record(conn: Any) -> tuple[str, int | None]:
        current = records.file_get(conn, file_id)
        if current is None:
            return "missing", None
        if current.status != "pending" or current.part_size != row.part_size:
            return "changed", None
        return "ok", records.put_part(conn, file_id, number, size, crc, generation)

    outcome: tuple[str, int | None] = ("missing", None)
    try:
        outcome = await state.db.run(record)
    finally:
        if outcome[0] != "ok":
            await state.blobs.remove([dest])
    status, replaced = outcome
    if status == "missing":
        raise HTTPError(404, f"No upload {file_id}")
    if status == "changed":
        raise HTTPError(409, "This upload was confirmed or re-planned meanwhile")
    if replaced is not None:
        await state.blobs.remove([state.blobs.part_path(file_id, number, replaced)])
    return json_response(
        {"file_id": file_id, "number": number, "size": size, "crc32c": crc},
        headers={"x-goog-hash": f"crc32c={crc}"},
    )


def _object_headers(generation: int, crc: str) -> dict[str, str]:
    return {
        "ETag": _etag(generation, crc),
        "x-goog-hash": f"crc32c={crc}",
        "x-goog-generation": str(generation),
    }


def _etag(generation: int, crc: str) -> str:
    digest = decode_crc32c(crc) or b""
    return f'"{generation:x}-{digest.hex()}"'


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
    paced = state.injector.config.active
    if not paced:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        try:
            await asyncio.get_running_loop().sendfile(transport, f, start, length, fallback=False)
            return
        except asyncio.SendfileNotAvailableError:
            pass  # e.g. TLS: stream through the disk threads instead
    chunk_size = PACED_CHUNK if paced else SEND_CHUNK
    offset, remaining = start, length
    while remaining:
        chunk = await state.blobs.read_at(f, offset, min(chunk_size, remaining))
        if not chunk:
            raise OSError("the stored object is shorter than its record")
        await response.write(chunk)
        if paced:
            await pace(request, len(chunk), total=length)
        offset += len(chunk)
        remaining -= len(chunk)


def register(router: Router) -> None:
    """Add the storage routes."""
    router.storage("PUT", STORAGE_PREFIX + "/{file_id}", put_object)
    router.storage("PUT", STORAGE_PREFIX + "/{file_id}/parts/{number:[0-9]{1,9}}", put_part)
    router.storage("GET", STORAGE_PREFIX + "/{file_id}", get_object)
    router.storage("HEAD", STORAGE_PREFIX + "/{file_id}", get_object)

"""The files API: list, get, delete, multipart upload, signed upload (single or parts), content.

Upload flows (the record is invisible to listings until confirmed):

* ``POST /v1/files`` (multipart, at most 4.5 MB): bytes and record in one request.
* ``POST /v1/files/upload-url`` -> ``PUT`` the signed URL -> ``POST .../confirm-upload``: the
  hosted single-object flow (up to 500 MB).
* The same with ``size_bytes`` above the part size: the answer adds a part plan; each part is
  PUT to its own signed URL (in any order, concurrently, re-sendable) and written in place into
  the upload's file (see :mod:`labric.server.blobs`). ``confirm-upload`` with
  ``{"parts": [...]}`` checks every part, joins their CRC32Cs into the whole file's (checked
  against the ``crc32c`` given up front), and renames the upload file into place: the bytes are
  not read or copied again. ``upload-status`` lists the parts stored (each one is on disk), so an
  interrupted upload resumes by sending only the missing ones (it also signs fresh URLs for
  those). ``size_bytes`` may be at most :data:`MAX_FILE_SIZE` (422 beyond); a file that would
  need more than :data:`MAX_PARTS` parts gets larger parts instead (:func:`plan_part_size`),
  since the answer signs a URL for every part.

Confirming is serialised per file and idempotent: confirming a confirmed file returns its record.
Its commit is durable (synced), so a confirmed file stays confirmed after a power cut.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from labric._transfer.checksum import crc32c_combine, crc32c_from_b64, crc32c_to_b64
from labric.server import records
from labric.server._http import Fields, HTTPError, invalid, json_response, read_json_object
from labric.server.auth import Principal
from labric.server.blobs import TempBlob, UploadFile, UploadSealed, crc32c_b64, decode_crc32c
from labric.server.faults import pace
from labric.server.jobs.runner import on_file_confirmed
from labric.server.routes._common import (
    file_info,
    object_path,
    part_path,
    plan_parts,
    principal,
    sign_url,
    size_kilobytes,
    upload_result,
)
from labric.server.routing import Router
from labric.server.state import STATE, ServerState

__all__ = ["MAX_FILE_SIZE", "MAX_PARTS", "register", "safe_content_type", "text_preview"]

OCTET_STREAM = "application/octet-stream"
#: Media types a browser could render as a page (so could run script in the storage origin).
_RENDERABLE = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "multipart/x-mixed-replace",
    }
)
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_MULTIPART_CHUNK = 256 * 1024
_FIELD_LIMIT = 1024
#: The longest file name (with its folders) a file may have.
_MAX_NAME = 4096
#: The largest file an upload may announce (5 TiB, as a cloud storage object).
MAX_FILE_SIZE = 5 * 1024**4
#: The most parts an upload may be planned in (its answer signs a URL for each).
MAX_PARTS = 10_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_content_type(value: str | None) -> str:
    """The content type to store: the given one, unless a browser could render it as a page
    (HTML, XHTML, SVG, XML, JavaScript) or it is malformed; then ``application/octet-stream``."""
    if not value or not value.strip():
        return OCTET_STREAM
    value = value.strip()
    if len(value) > 255 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return OCTET_STREAM
    media = value.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.match(media):
        return OCTET_STREAM
    subtype = media.partition("/")[2]
    if (
        media in _RENDERABLE
        or "javascript" in subtype
        or "ecmascript" in subtype
        or subtype in ("html", "xhtml", "xml")
        or subtype.endswith("+xml")
    ):
        return OCTET_STREAM
    return value


def text_preview(data: bytes, total: int) -> tuple[str | None, str | None]:
    """A best-effort UTF-8 preview of ``data`` (the head of a ``total``-byte file).

    Returns:
        ``(text, None)``, or ``(None, reason)`` when the bytes are not text.
    """
    if b"\x00" in data:
        return None, "binary content: the file contains NUL bytes"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the preview limit is not an encoding error.
        cut_short = total > len(data) and exc.end == len(data) and len(data) - exc.start < 4
        if cut_short:
            try:
                return data[: exc.start].decode("utf-8"), None
            except UnicodeDecodeError:
                pass
    return None, "binary content: the file is not UTF-8 text"


def _split_name(raw: str, fields: Fields, field: str) -> tuple[str, str]:
    """``(original_path, file_name)`` of a given name, which may carry folders.

    Names are data, never paths on the server's disk (blobs are named by file id). A name is
    refused when a client could not write it back as a file: one that is not text (a multipart
    filename that is not UTF-8), holds control characters, is too long, or does not end with a
    file name (``a/``, ``.``, ``..``).
    """
    path = raw.strip()
    name = re.split(r"[\\/]", path)[-1]
    if len(path) > _MAX_NAME:
        fields.add([field], f"String should have at most {_MAX_NAME} characters", "string_too_long")
    elif not _is_text(path):
        fields.add([field], "The name must be UTF-8 text", "value_error")
    elif _CONTROL.search(path):
        fields.add([field], "The name must not contain control characters", "value_error")
    elif name in ("", ".", ".."):
        fields.add([field], "The name must end with a file name", "value_error")
    return path, name


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: undecodable bytes, or a lone "\ud800" escape
        return False
    return True


def _not_found(file_id: str) -> HTTPError:
    return HTTPError(404, f"File {file_id} not found")


def _resolve_attribution(
    conn: Any,
    who: Principal,
    instrument_id: str | None,
    job_execution_id: str | None,
    now: str,
) -> tuple[str | None, str | None]:
    """Check the ids a file is attributed to (on the database thread); apply the defaults of
    job keys (the running execution) and paired device keys (their instrument)."""
    if instrument_id is None:
        instrument_id = who.instrument_id
    if instrument_id is not None and not records.instrument_exists(conn, who.org_id, instrument_id):
        raise HTTPError(404, f"Instrument {instrument_id} not found")
    if job_execution_id is not None:
        records.expire_executions(conn, now)
        if records.execution_get(conn, who.org_id, job_execution_id) is None:
            raise HTTPError(404, f"Job execution {job_execution_id} not found")
    if instrument_id is None and job_execution_id is None and who.job_execution_id is None:
        raise HTTPError(
            400,
            "Say where the file comes from: give instrument_id or job_execution_id "
            "(inside a job script, uploads default to the running execution)",
        )
    if job_execution_id is None:
        # A running job's uploads record it as their provenance, instrument or not.
        job_execution_id = who.job_execution_id
    return instrument_id, job_execution_id


def _source_type(instrument_id: str | None) -> str:
    return "instrument" if instrument_id is not None else "job"


# -- listing and metadata ------------------------------------------------------------------


def _encode_cursor(row: records.FileRow) -> str:
    raw = json.dumps([row.created_at, row.seq], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, seq = json.loads(raw)
        # SQLite integers have 64 bits: a larger one would fail the query, not the cursor.
        if isinstance(created_at, str) and isinstance(seq, int) and -(2**63) <= seq < 2**63:
            return created_at, seq
    except (ValueError, TypeError, binascii.Error):
        pass
    raise HTTPError(400, "Invalid cursor: pass back the one from the previous page's Link header")


async def list_files(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files``: confirmed files, newest first, filtered, paginated by cursor."""
    state = request.app[STATE]
    who = principal(request)
    q = Fields(request.query, "query")
    instrument_id = q.string("instrument_id", max_length=128) or None
    extensions = q.string("extensions", max_length=2048) or ""
    query = q.string("query", max_length=2048) or ""
    limit = q.integer("limit", minimum=1)
    cursor = q.string("cursor", max_length=1024) or None
    q.check()
    exts = sorted(
        {"." + e.strip().lstrip(".").casefold() for e in extensions.split(",") if e.strip(" .")}
    )
    terms = [t.casefold() for t in query.split()]
    after = _decode_cursor(cursor) if cursor else None
    # Pages are capped (the next page is linked), so a large hosted-style limit still works.
    page = min(limit or state.settings.default_page_size, state.settings.max_page_size)
    rows = await state.db.run(
        lambda conn: records.list_files(
            conn,
            who.org_id,
            instrument_id=instrument_id,
            extensions=exts,
            terms=terms,
            after=after,
            limit=page + 1,
        )
    )
    headers = {}
    if len(rows) > page:
        rows = rows[:page]
        next_url = request.url.update_query({"cursor": _encode_cursor(rows[-1])})
        headers["Link"] = f'<{next_url}>; rel="next"'
    return json_response([file_info(row) for row in rows], headers=headers)


async def get_file(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{file_id}``: one confirmed file's metadata."""
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    row = await state.db.run(records.file_get, file_id, principal(request).org_id)
    if row is None or row.status != "confirmed":
        raise _not_found(file_id)
    return json_response(file_info(row))


async def delete_file(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/files/{file_id}``: the record, its parts and its bytes."""
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    org_id = principal(request).org_id

    def delete(conn: Any) -> records.FileRow | None:
        row = records.file_get(conn, file_id, org_id)
        if row is None:
            return None
        records.delete_parts(conn, file_id)
        records.delete_file(conn, file_id)
        return row

    row = await state.db.run(delete)
    if row is None:
        raise _not_found(file_id)
    await state.blobs.remove_file(file_id, row.generation, row.upload_generation)
    return web.Response(status=204)


# -- multipart upload ----------------------------------------------------------------------


async def upload_multipart(request: web.Request) -> web.StreamResponse:
    """``POST /v1/files``: a small file and its record in one multipart request."""
    state = request.app[STATE]
    who = principal(request)
    limit = state.settings.max_multipart_body
    too_large = HTTPError(
        413, f"Request body is over the limit of {limit} bytes for this route", close=True
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as exc:
        raise invalid(["body"], f"Expected a multipart/form-data body ({exc})") from None
    paced = state.injector.config.active
    values: dict[str, str] = {}
    blob: TempBlob | None = None
    upload_name: str | None = None
    upload_type: str | None = None
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise invalid(["body"], "Nested multipart is not supported")
            name = part.name or ""
            if name == "file" and blob is None:
                upload_name = part.filename
                upload_type = part.headers.get("Content-Type")
                blob = state.blobs.writer()
                pending: list[bytes] = []
                pending_size = 0
                while True:
                    chunk = await part.read_chunk(_MULTIPART_CHUNK)
                    if not chunk:
                        break
                    # Count what arrived, not what the part reader handed over: it holds back
                    # a window to look for the boundary, which a body cut short never sends.
                    if request.content.total_bytes > limit:
                        raise too_large
                    if paced:
                        await pace(request, len(chunk))
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= 1024 * 1024:
                        await blob.write(b"".join(pending))
                        pending, pending_size = [], 0
                if pending:
                    await blob.write(b"".join(pending))
            else:
                data = b""
                while True:
                    chunk = await part.read_chunk(_FIELD_LIMIT)
                    if not chunk:
                        break
                    if request.content.total_bytes > limit:
                        raise too_large
                    data += chunk
                    if len(data) > _FIELD_LIMIT:
                        raise invalid(["body", name], "Field too long", "string_too_long")
                values.setdefault(name, data.decode("utf-8", "replace").strip())
        fields = Fields({k: v or None for k, v in values.items()})
        instrument_id = fields.string("instrument_id", max_length=128)
        job_execution_id = fields.string("job_execution_id", max_length=128)
        if blob is None:
            fields.add(["file"], "Field required", "missing")
        original_path, file_name = ("", "")
        if blob is not None:
            if not upload_name:
                fields.add(["file"], "The file part needs a filename", "missing")
            else:
                original_path, file_name = _split_name(upload_name, fields, "file")
        fields.check()
        assert blob is not None
        size, digest = await blob.finish()
        kind = await state.blobs.executable_kind(blob.path)
        if kind is not None:
            raise HTTPError(
                400, f"Native executables ({kind}) are not accepted; the file was discarded"
            )
        file_id = records.new_id()
        generation = state.blobs.new_generation()
        dest = state.blobs.object_path(file_id, generation)
        await blob.install(dest)
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        if blob is not None:
            blob.abort()
        raise HTTPError(400, f"Malformed multipart body: {exc}", close=True) from None
    except BaseException:
        if blob is not None:
            blob.abort()
        raise
    now = state.now()
    crc = crc32c_b64(digest)

    def create(conn: Any) -> records.FileRow:
        inst, execution = _resolve_attribution(conn, who, instrument_id, job_execution_id, now)
        records.insert_file(
            conn,
            file_id=file_id,
            org_id=who.org_id,
            file_name=file_name,
            original_path=original_path,
            content_type=safe_content_type(upload_type),
            source_type=_source_type(inst),
            instrument_id=inst,
            job_execution_id=execution,
            now=now,
        )
        records.confirm_file(conn, file_id, now=now, generation=generation, size=size, crc32c=crc)
        row = records.file_get(conn, file_id)
        assert row is not None
        return row

    try:
        row = await state.db.run(create)
    except BaseException:
        await state.blobs.remove([dest])
        raise
    await on_file_confirmed(state, row.id, who)  # job triggers
    return json_response(upload_result(row))


# -- signed uploads ------------------------------------------------------------------------


def _upload_headers(state: ServerState, content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "x-goog-if-generation-match": "0",
        "x-goog-content-length-range": state.settings.signed_length_range,
    }


def plan_part_size(size: int | None, base: int) -> int:
    """The part size of an upload of ``size`` bytes: the server's ``base`` part size, grown to a
    whole multiple of it when the file would otherwise need more than :data:`MAX_PARTS` parts
    (as object stores do), so every file up to :data:`MAX_FILE_SIZE` can be uploaded in parts."""
    if size is None:
        return base
    needed = -(-size // MAX_PARTS)
    return base * max(1, -(-needed // base))


async def create_upload_url(request: web.Request) -> web.StreamResponse:
    """``POST /v1/files/upload-url``: a file record and signed URL(s) to PUT its bytes to."""
    state = request.app[STATE]
    who = principal(request)
    body = await read_json_object(request)
    f = Fields(body)
    raw_name = f.string("file_name", required=True, max_length=4096)
    content_type = f.string("content_type", max_length=1024)
    job_execution_id = f.string("job_execution_id", max_length=128)
    instrument_id = f.string("instrument_id", max_length=128)
    size_bytes = f.integer("size_bytes", minimum=0, maximum=MAX_FILE_SIZE)
    part_size = plan_part_size(size_bytes, state.settings.part_size)
    expected_crc = f.string("crc32c", max_length=64)
    if expected_crc is not None and decode_crc32c(expected_crc) is None:
        f.add(["crc32c"], "Expected the base64 of a 4-byte big-endian CRC32C", "value_error")
    original_path, file_name = _split_name(raw_name, f, "file_name") if raw_name else ("", "")
    f.check()
    ctype = safe_content_type(content_type)
    planned = size_bytes is not None and size_bytes > part_size
    plan_size = part_size if planned else None
    now = state.now()

    def create(conn: Any) -> tuple[records.FileRow, int]:
        inst, execution = _resolve_attribution(conn, who, instrument_id, job_execution_id, now)
        existing = records.pending_at_path(conn, who.org_id, inst, original_path) if inst else None
        if existing is None:
            row = records.insert_file(
                conn,
                org_id=who.org_id,
                file_name=file_name,
                original_path=original_path,
                content_type=ctype,
                source_type=_source_type(inst),
                instrument_id=inst,
                job_execution_id=execution,
                now=now,
                part_size=plan_size,
                expected_size=size_bytes,
                expected_crc32c=expected_crc,
            )
            return row, 0
        # Asked again for an unconfirmed upload: same file id, fresh URLs. Parts already stored
        # are kept when the plan is unchanged (so the upload resumes), else dropped with the
        # upload file.
        dropped = 0
        if (existing.part_size, existing.expected_size) != (plan_size, size_bytes):
            dropped = records.drop_upload(conn, existing.id)
        records.update_pending(
            conn,
            existing.id,
            content_type=ctype,
            job_execution_id=job_execution_id,
            part_size=plan_size,
            expected_size=size_bytes,
            expected_crc32c=expected_crc,
        )
        refreshed = records.file_get(conn, existing.id)
        assert refreshed is not None
        return refreshed, dropped

    row, dropped = await state.db.run(create)
    await state.blobs.remove_file(row.id, 0, dropped)
    ttl = state.settings.upload_url_ttl
    headers = _upload_headers(state, row.content_type)
    upload_url, expires_at = sign_url(
        state, request, "PUT", object_path(row.id), ttl=ttl, headers=headers
    )
    answer: dict[str, Any] = {
        "file_id": row.id,
        "upload_url": upload_url,
        "headers": headers,
        "expires_at": expires_at,
    }
    if planned and size_bytes is not None:
        parts = []
        for number, offset, size in plan_parts(size_bytes, part_size):
            url, _ = sign_url(state, request, "PUT", part_path(row.id, number), ttl=ttl)
            parts.append(
                {"number": number, "offset": offset, "size": size, "url": url, "headers": {}}
            )
        answer["part_size"] = part_size
        answer["parts"] = parts
    return json_response(answer)


def _parse_confirm_parts(body: dict[str, Any]) -> list[tuple[int, str]] | None:
    f = Fields(body)
    items = f.array("parts")
    if items is None:
        f.check()
        return None
    listed: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            f.add(["parts", index], "Each part must be an object", "dict_type")
            continue
        pf = Fields(item)
        number = pf.integer("number", required=True, minimum=1)
        crc = pf.string("crc32c", required=True, max_length=64)
        if crc is not None and decode_crc32c(crc) is None:
            pf.add(["crc32c"], "Expected the base64 of a 4-byte big-endian CRC32C")
        for problem in pf.problems:
            f.add(["parts", index, *problem["loc"][1:]], problem["msg"], problem["type"])
        if number is not None and crc is not None and not pf.problems:
            listed.append((number, crc))
    f.check()
    return listed


async def confirm_upload(request: web.Request) -> web.StreamResponse:
    """``POST /v1/files/{file_id}/confirm-upload``: finish a signed upload (single or parts)."""
    state = request.app[STATE]
    who = principal(request)
    file_id = request.match_info["file_id"]
    body = await read_json_object(request, optional=True)
    listed = _parse_confirm_parts(body)
    async with state.file_locks.hold(file_id):
        row = await state.db.run(records.file_get, file_id, who.org_id)
        if row is None:
            raise _not_found(file_id)
        if row.status == "confirmed":
            return json_response(upload_result(row))
        if listed is None:
            row = await _confirm_single(state, row)
        else:
            row = await _confirm_parts(state, row, listed)
        await on_file_confirmed(state, row.id, who)  # job triggers (only on this first confirm)
    return json_response(upload_result(row))


async def _discard_object(state: ServerState, row: records.FileRow, detail: str) -> HTTPError:
    await state.db.run(records.clear_object, row.id)
    await state.blobs.remove([state.blobs.object_path(row.id, row.generation)])
    return HTTPError(400, detail)


async def _finalise(
    state: ServerState, file_id: str, generation: int, size: int, crc: str
) -> records.FileRow:
    now = state.now()

    def confirm(conn: Any) -> tuple[records.FileRow | None, int]:
        dropped = records.drop_upload(conn, file_id)  # parts sent before a single PUT won
        records.confirm_file(conn, file_id, now=now, generation=generation, size=size, crc32c=crc)
        return records.file_get(conn, file_id), dropped

    row, dropped = await state.db.run_durable(confirm)
    await state.blobs.remove_file(file_id, 0, dropped)
    if row is None:
        raise _not_found(file_id)  # deleted while confirming
    return row


async def _confirm_single(state: ServerState, row: records.FileRow) -> records.FileRow:
    if row.generation == 0 or row.size_bytes is None or row.crc32c is None:
        raise HTTPError(
            400,
            "Nothing was uploaded for this file yet: PUT its bytes to the upload URL, then confirm",
        )
    limit = state.settings.max_single_put
    if row.size_bytes > limit:
        raise await _discard_object(
            state,
            row,
            f"The file is {row.size_bytes} bytes, over the {limit}-byte limit; it was discarded",
        )
    if row.expected_size is not None and row.size_bytes != row.expected_size:
        raise await _discard_object(
            state,
            row,
            f"The uploaded object is {row.size_bytes} bytes but size_bytes was "
            f"{row.expected_size}; it was discarded",
        )
    if row.expected_crc32c is not None and row.crc32c != row.expected_crc32c:
        raise await _discard_object(
            state,
            row,
            f"The uploaded object's crc32c is {row.crc32c} but "
            f"{row.expected_crc32c} was expected; it was discarded",
        )
    kind = await state.blobs.executable_kind(state.blobs.object_path(row.id, row.generation))
    if kind is not None:
        raise await _discard_object(
            state, row, f"Native executables ({kind}) are not accepted; the file was discarded"
        )
    return await _finalise(state, row.id, row.generation, row.size_bytes, row.crc32c)


async def _confirm_parts(
    state: ServerState, row: records.FileRow, listed: list[tuple[int, str]]
) -> records.FileRow:
    if row.part_size is None or row.expected_size is None:
        raise HTTPError(
            400,
            "This upload has no part plan (ask for the upload URL with size_bytes over the "
            "part size); to confirm a single PUT, send no body",
        )
    plan = plan_parts(row.expected_size, row.part_size)
    numbers = [n for n, _ in listed]
    given = dict(listed)
    if len(given) != len(numbers):
        raise HTTPError(400, "A part is listed more than once")
    unknown = sorted(set(given) - {n for n, _, _ in plan})
    if unknown:
        raise HTTPError(400, f"Part {unknown[0]} is not in this upload's plan of {len(plan)}")
    missing = [n for n, _, _ in plan if n not in given]
    if missing:
        raise HTTPError(400, f"The confirm request does not list part(s) {_numbers(missing)}")
    if not row.upload_generation:
        raise HTTPError(400, f"Part(s) {_numbers([n for n, _, _ in plan])} were not uploaded")
    # In a task of its own: once the upload file is renamed, the row must follow (or the rename
    # be undone) even if this request is cancelled meanwhile.
    task = asyncio.ensure_future(_assemble(state, row, plan, given))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await asyncio.shield(task)


async def _assemble(
    state: ServerState,
    row: records.FileRow,
    plan: list[tuple[int, int, int]],
    given: dict[int, str],
) -> records.FileRow:
    """Seal the upload file, check the recorded parts against the plan and the request, and
    rename the file into place as the object (see :mod:`labric.server.blobs`)."""
    try:
        async with state.blobs.open_upload(row.id, row.upload_generation) as upload:
            if upload.sealed:
                raise UploadSealed(row.id)
            await upload.seal()  # no part write starts from here on, and none is running
            try:
                return await _publish(state, row, plan, given, upload)
            finally:
                upload.unseal()  # when the checks failed; a published upload stays sealed
    except UploadSealed:
        raise HTTPError(
            409, "This upload was re-planned or deleted while confirming; ask for it again"
        ) from None


async def _publish(
    state: ServerState,
    row: records.FileRow,
    plan: list[tuple[int, int, int]],
    given: dict[int, str],
    upload: UploadFile,
) -> records.FileRow:
    def snapshot(conn: Any) -> tuple[records.FileRow | None, list[records.PartRow]]:
        return records.file_get(conn, row.id), records.parts_of(conn, row.id)

    current, parts = await state.db.run(snapshot)
    if current is None:
        raise _not_found(row.id)
    if current.status != "pending" or current.upload_generation != upload.generation:
        raise HTTPError(409, "This upload was re-planned while confirming; ask for it again")
    stored = {p.number: p for p in parts if p.generation == upload.generation}
    absent = [n for n, _, _ in plan if n not in stored]
    if absent:
        raise HTTPError(400, f"Part(s) {_numbers(absent)} were not uploaded")
    whole = 0
    for number, _, size in plan:
        part = stored[number]
        if part.size != size:
            raise HTTPError(400, f"Part {number} is {part.size} bytes; the plan says {size}")
        if part.crc32c != given[number]:
            raise HTTPError(
                400,
                f"Part {number}'s crc32c is {part.crc32c} on the server but {given[number]} "
                "in the request: re-send the part",
            )
        whole = crc32c_combine(whole, crc32c_from_b64(part.crc32c), size)
    crc = crc32c_to_b64(whole)
    if current.expected_crc32c is not None and crc != current.expected_crc32c:
        raise HTTPError(
            400,
            f"The assembled object's crc32c is {crc} but {current.expected_crc32c} was given "
            "when the upload was created; the parts were kept",
        )
    kind = await state.blobs.executable_kind(upload.path)
    if kind is not None:
        raise HTTPError(400, f"Native executables ({kind}) are not accepted")
    size = sum(part_size for _, _, part_size in plan)
    generation = state.blobs.new_generation()
    dest = state.blobs.object_path(row.id, generation)
    await state.blobs.publish_upload(upload, dest, size)
    now = state.now()
    held = {(p.number, p.generation, p.crc32c) for p in parts}

    def confirm(conn: Any) -> records.FileRow | str:
        latest = records.file_get(conn, row.id)
        if latest is None:
            return "missing"
        if (
            latest.status != "pending"
            or latest.upload_generation != upload.generation
            or {(p.number, p.generation, p.crc32c) for p in records.parts_of(conn, row.id)} != held
        ):
            return "changed"
        records.delete_parts(conn, row.id)
        records.confirm_file(conn, row.id, now=now, generation=generation, size=size, crc32c=crc)
        confirmed = records.file_get(conn, row.id)
        assert confirmed is not None
        return confirmed

    try:
        outcome = await state.db.run_durable(confirm)
    except BaseException:
        await state.blobs.unpublish(upload, dest)
        raise
    if isinstance(outcome, str):
        await state.blobs.remove([dest])
        if outcome == "missing":
            raise _not_found(row.id)
        raise HTTPError(409, "This upload was re-planned while confirming; ask for it again")
    state.blobs.discard_upload(row.id, upload.generation)
    if current.generation:
        await state.blobs.remove([state.blobs.object_path(row.id, current.generation)])
    return outcome


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20])
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")


async def upload_status(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{file_id}/upload-status``: pending or confirmed, and the stored parts.

    For a pending multipart upload, ``missing_parts`` carries freshly signed URLs for the parts
    the server does not hold yet, so an interrupted upload resumes (even after its first URLs
    expired) by sending only those.
    """
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    org_id = principal(request).org_id

    def status(conn: Any) -> tuple[records.FileRow, list[records.PartRow]] | None:
        row = records.file_get(conn, file_id, org_id)
        return None if row is None else (row, records.parts_of(conn, file_id))

    found = await state.db.run(status)
    if found is None:
        raise _not_found(file_id)
    row, parts = found
    missing: list[dict[str, Any]] = []
    if row.status == "pending" and row.part_size is not None and row.expected_size is not None:
        held = {p.number for p in parts}
        for number, offset, size in plan_parts(row.expected_size, row.part_size):
            if number in held:
                continue
            url, _ = sign_url(
                state,
                request,
                "PUT",
                part_path(row.id, number),
                ttl=state.settings.upload_url_ttl,
            )
            missing.append(
                {"number": number, "offset": offset, "size": size, "url": url, "headers": {}}
            )
    return json_response(
        {
            "file_id": row.id,
            "status": row.status,
            "part_size": row.part_size,
            "parts": [{"number": p.number, "size": p.size, "crc32c": p.crc32c} for p in parts],
            "missing_parts": missing,
        }
    )


async def file_content(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{file_id}/content``: a signed download URL and a text preview."""
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    row = await state.db.run(records.file_get, file_id, principal(request).org_id)
    if row is None or row.status != "confirmed" or row.size_bytes is None:
        raise _not_found(file_id)
    limit = state.settings.preview_bytes
    preview: str | None
    reason: str | None
    try:
        head = await state.blobs.read_head(state.blobs.object_path(row.id, row.generation), limit)
    except OSError:
        preview, reason = None, "reading the stored bytes failed"
    else:
        preview, reason = text_preview(head, row.size_bytes)
    url, _ = sign_url(
        state, request, "GET", object_path(row.id), ttl=state.settings.download_url_ttl
    )
    return json_response(
        {
            "file_id": row.id,
            "file_name": row.file_name,
            "size_kilobytes": size_kilobytes(row.size_bytes),
            "download_url": url,
            "text_preview": preview,
            "preview_truncated": row.size_bytes > limit,
            "preview_skipped_reason": reason,
            "size_bytes": row.size_bytes,
            "crc32c_hash": row.crc32c,
        }
    )


def register(router: Router) -> None:
    """Add the files routes."""
    router.api("GET", "/v1/files", list_files, scope="read")
    router.api("POST", "/v1/files", upload_multipart, scope="write")
    router.api("POST", "/v1/files/upload-url", create_upload_url, scope="write")
    router.api("GET", "/v1/files/{file_id}", get_file, scope="read")
    router.api("DELETE", "/v1/files/{file_id}", delete_file, scope="write")
    router.api("POST", "/v1/files/{file_id}/confirm-upload", confirm_upload, scope="write")
    router.api("GET", "/v1/files/{file_id}/upload-status", upload_status, scope="read")
    router.api("GET", "/v1/files/{file_id}/content", file_content, scope="read")

"""The files API: list, get, delete, copy, multipart upload, content; signed uploads (single or
parts) are in :mod:`.signed`.

Upload flows (the record is invisible to listings until confirmed):

* ``POST /v1/files`` (multipart, at most 4.5 MB): bytes and record in one request.
* ``POST /v1/files/upload-url`` -> ``PUT`` the signed URL -> ``POST .../confirm-upload``: the
  hosted single-object flow (up to 500 MB).
* The same with ``size_bytes`` above the part size: the answer adds a part plan; each part is PUT to
  its own signed URL (in any order, concurrently, re-sendable) and written in place into the
  upload's file (see :mod:`labric.server.core.blobs`). ``confirm-upload`` with ``{"parts": [...]}``
  checks every part, joins their CRC32Cs into the whole file's (checked against the ``crc32c`` given
  up front), and renames the upload file into place: the bytes are not read or copied again.
  ``upload-status`` lists the parts stored (each one is written to disk), so an interrupted upload
  resumes by sending only the missing ones (it also signs fresh URLs for those). ``size_bytes`` may
  be at most :data:`.common.MAX_FILE_SIZE` (422 beyond); a file that would need more than
  :data:`.common.MAX_PARTS` parts gets larger parts instead (:func:`.signed.plan_part_size`), since
  the answer signs a URL for every part.

Confirming is serialised per file and idempotent: confirming a confirmed file returns its record.
Its commit is durable (synced), so a confirmed file stays confirmed after a power cut.

Copying (``POST /v1/files/{file_id}/copy``, a local route) makes a new confirmed file whose
object is a hard link to the source's: no bytes are copied, and either file can be deleted
without touching the other's bytes (:meth:`~labric.server.core.blobs.BlobStore.share_object`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.blobs import TempBlob, crc32c_b64
from labric.server.core.declare import (
    FILE_ID,
    PAGE,
    Body,
    Operation,
    Param,
    Response,
    array,
    obj,
    ref,
    string,
)
from labric.server.core.faults import pace
from labric.server.core.http import Fields, HTTPError, invalid, json_response, read_json_object
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.files import wire
from labric.server.files.common import (
    file_info,
    not_found,
    object_path,
    resolve_attribution,
    safe_content_type,
    sign_url,
    size_kilobytes,
    source_type,
    split_name,
    upload_result,
)
from labric.server.images import store as images_store
from labric.server.jobs.runner import on_file_confirmed

__all__ = ["register", "text_preview"]

_MULTIPART_CHUNK = 256 * 1024
_FIELD_LIMIT = 1024


ROUTES = Routes(wire.FILES)


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


# -- listing and metadata ------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/files",
        scope="read",
        summary="List confirmed files, newest first",
        params=(
            Param(name="instrument_id", where="query", schema=string(maxLength=128)),
            Param(
                name="extensions",
                where="query",
                schema=string(maxLength=2048),
                description="Comma-separated, e.g. csv,txt",
            ),
            Param(
                name="query",
                where="query",
                schema=string(maxLength=2048),
                description="Space-separated terms that must all appear in the path",
            ),
            *PAGE,
        ),
        responses=(Response(schema=array(ref("FileInfo"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
        hosted=True,
    )
)
async def list_files(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files``: confirmed files, newest first, filtered, paginated by cursor."""
    state = request.app[STATE]
    who = principal(request)
    q = Fields(request.query, "query")
    instrument_id = q.string("instrument_id", max_length=128) or None
    extensions = q.string("extensions", max_length=2048) or ""
    query = q.string("query", max_length=2048) or ""
    wanted = listing(state, q)
    exts = sorted(
        {"." + e.strip().lstrip(".").casefold() for e in extensions.split(",") if e.strip(" .")}
    )
    terms = [t.casefold() for t in query.split()]

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: records.list_files(
                conn,
                who.org_id,
                instrument_id=instrument_id,
                extensions=exts,
                terms=terms,
                after=after,
                limit=n,
            )
        )
        return [((row.created_at, row.seq), file_info(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/files/{file_id}",
        scope="read",
        summary="One confirmed file's metadata",
        params=(FILE_ID,),
        responses=(Response(schema=ref("FileInfo")),),
        errors={404: "No such confirmed file"},
    )
)
async def get_file(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{file_id}``: one confirmed file's metadata."""
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    row = await state.db.run(records.file_get, file_id, principal(request).org_id)
    if row is None or row.status != "confirmed":
        raise not_found(file_id)
    return json_response(file_info(row))


@ROUTES.route(
    Operation(
        method="DELETE",
        path="/v1/files/{file_id}",
        scope="write",
        summary="Delete a file: its record, parts and bytes",
        params=(FILE_ID,),
        responses=(Response(status=204, description="Deleted"),),
        errors={404: "No such file"},
    )
)
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
        raise not_found(file_id)
    await state.blobs.remove_file(file_id, row.generation, row.upload_generation)
    await images_store.remove_file_masks(state.blobs, [file_id])  # their rows went with the file
    return web.Response(status=204)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/files/{file_id}/copy",
        scope="write",
        summary="Copy a file to a new path: a new confirmed file sharing the stored bytes",
        params=(FILE_ID,),
        body=Body(schema=ref("CopyFileRequest")),
        responses=(Response(schema=ref("FileInfo")),),
        errors={
            400: f"No attribution: {wire.ATTRIBUTION}",
            404: "No such confirmed file, or the job execution does not exist",
        },
    )
)
async def copy_file(request: web.Request) -> web.StreamResponse:
    """``POST /v1/files/{file_id}/copy``: a new confirmed file with the source's bytes.

    The copy has its own id, path and attribution (the execution given, else the key's own, as
    for an upload); its object is a second name of the source's (see
    :meth:`~labric.server.core.blobs.BlobStore.share_object`), so nothing is read or written
    but a link, and deleting either file leaves the other's bytes alone.
    """
    state = request.app[STATE]
    who = principal(request)
    file_id = request.match_info["file_id"]
    body = await read_json_object(request)
    f = Fields(body)
    raw_path = f.string("original_path", required=True, max_length=4096)
    job_execution_id = f.string("job_execution_id", max_length=128)
    original_path, file_name = split_name(raw_path, f, "original_path") if raw_path else ("", "")
    f.check()
    source = await state.db.run(records.file_get, file_id, who.org_id)
    if (
        source is None
        or source.status != "confirmed"
        or not source.generation
        or source.size_bytes is None
        or source.crc32c is None
    ):
        raise not_found(file_id)
    size, crc = source.size_bytes, source.crc32c
    copy_id = records.new_id()
    generation = state.blobs.new_generation()
    dest = state.blobs.object_path(copy_id, generation)
    try:
        await state.blobs.share_object(state.blobs.object_path(source.id, source.generation), dest)
    except FileNotFoundError:
        raise not_found(file_id) from None  # deleted since it was looked up
    now = state.now()

    def create(conn: Any) -> records.FileRow:
        inst, execution = resolve_attribution(conn, who, None, job_execution_id, now)
        records.insert_file(
            conn,
            file_id=copy_id,
            org_id=who.org_id,
            file_name=file_name,
            original_path=original_path,
            content_type=source.content_type,
            source_type=source_type(inst),
            instrument_id=inst,
            job_execution_id=execution,
            now=now,
        )
        records.confirm_file(conn, copy_id, now=now, generation=generation, size=size, crc32c=crc)
        row = records.file_get(conn, copy_id)
        assert row is not None
        return row

    try:
        row = await state.db.run(create)
    except BaseException:
        await state.blobs.remove([dest])  # only the copy's own name; the source keeps its bytes
        raise
    await on_file_confirmed(state, row.id, who)  # job triggers, as for an upload
    return json_response(file_info(row))


# -- multipart upload ----------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/files",
        scope="write",
        summary="Upload a small file and its record in one multipart request",
        body=Body(
            media_type="multipart/form-data",
            schema=obj(
                {
                    "file": string(contentMediaType="application/octet-stream"),
                    "instrument_id": string(maxLength=128),
                    "job_execution_id": string(maxLength=128),
                },
                required=["file"],
            ),
        ),
        responses=(Response(schema=ref("FileUpload")),),
        errors={
            400: f"No attribution ({wire.ATTRIBUTION}), a native executable, or a malformed body",
            404: "The instrument or job execution does not exist",
        },
        hosted=True,
    )
)
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
                original_path, file_name = split_name(upload_name, fields, "file")
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
        inst, execution = resolve_attribution(conn, who, instrument_id, job_execution_id, now)
        records.insert_file(
            conn,
            file_id=file_id,
            org_id=who.org_id,
            file_name=file_name,
            original_path=original_path,
            content_type=safe_content_type(upload_type),
            source_type=source_type(inst),
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


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/files/{file_id}/content",
        scope="read",
        summary="A signed download URL and a UTF-8 text preview of the first 64 KiB",
        params=(FILE_ID,),
        responses=(Response(schema=ref("FileContent")),),
        errors={404: "No such confirmed file"},
        hosted=True,
    )
)
async def file_content(request: web.Request) -> web.StreamResponse:
    """``GET /v1/files/{file_id}/content``: a signed download URL and a text preview."""
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    row = await state.db.run(records.file_get, file_id, principal(request).org_id)
    if row is None or row.status != "confirmed" or row.size_bytes is None:
        raise not_found(file_id)
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
    router.add(ROUTES)

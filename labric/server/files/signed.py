"""Signed uploads: upload URLs (one object, or a plan of parts), confirmation and upload status.

See :mod:`labric.server.files.routes` for the upload flows these routes serve.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from labric._transfer.checksum import crc32c_combine, crc32c_from_b64, crc32c_to_b64
from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.blobs import UploadFile, UploadSealed, decode_crc32c
from labric.server.core.declare import FILE_ID, Body, Operation, Response, ref
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE, ServerState
from labric.server.files import wire
from labric.server.files.common import (
    MAX_FILE_SIZE,
    MAX_PARTS,
    not_found,
    object_path,
    part_path,
    plan_parts,
    resolve_attribution,
    safe_content_type,
    sign_url,
    source_type,
    split_name,
    upload_result,
)
from labric.server.jobs.runner import on_file_confirmed

__all__ = ["plan_part_size", "register"]


ROUTES = Routes(wire.FILES)


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


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/files/upload-url",
        scope="write",
        summary="Create a file record and signed URL(s) to PUT its bytes to",
        body=Body(schema=ref("UploadURLRequest")),
        responses=(Response(schema=ref("UploadURL")),),
        errors={
            400: f"No attribution: {wire.ATTRIBUTION}",
            404: "The instrument or job execution does not exist",
        },
        hosted=True,
    )
)
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
    original_path, file_name = split_name(raw_name, f, "file_name") if raw_name else ("", "")
    f.check()
    ctype = safe_content_type(content_type)
    planned = size_bytes is not None and size_bytes > part_size
    plan_size = part_size if planned else None
    now = state.now()

    def create(conn: Any) -> tuple[records.FileRow, int]:
        inst, execution = resolve_attribution(conn, who, instrument_id, job_execution_id, now)
        existing = records.pending_at_path(conn, who.org_id, inst, original_path) if inst else None
        if existing is None:
            row = records.insert_file(
                conn,
                org_id=who.org_id,
                file_name=file_name,
                original_path=original_path,
                content_type=ctype,
                source_type=source_type(inst),
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


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/files/{file_id}/confirm-upload",
        scope="write",
        summary="Finish a signed upload (single PUT or parts); idempotent",
        params=(FILE_ID,),
        body=Body(schema=ref("ConfirmUploadRequest"), required=False),
        responses=(Response(schema=ref("FileUpload")),),
        errors={
            400: "Nothing uploaded, a size or checksum mismatch, missing parts",
            404: "No such file",
            409: "The upload was re-planned or deleted while confirming",
        },
        hosted=True,
    )
)
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
            raise not_found(file_id)
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
        raise not_found(file_id)  # deleted while confirming
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
    rename the file into place as the object (see :mod:`labric.server.core.blobs`)."""
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
        raise not_found(row.id)
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
            raise not_found(row.id)
        raise HTTPError(409, "This upload was re-planned while confirming; ask for it again")
    state.blobs.discard_upload(row.id, upload.generation)
    if current.generation:
        await state.blobs.remove([state.blobs.object_path(row.id, current.generation)])
    return outcome


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20])
    return shown + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/files/{file_id}/upload-status",
        scope="read",
        summary="Pending or confirmed, the parts stored and fresh URLs for missing ones",
        params=(FILE_ID,),
        responses=(Response(schema=ref("UploadStatus")),),
        errors={404: "No such file"},
    )
)
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
        raise not_found(file_id)
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


def register(router: Router) -> None:
    """Add the signed-upload routes."""
    router.add(ROUTES)

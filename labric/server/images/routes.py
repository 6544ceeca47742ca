"""The image annotation routes (hosted), and the signed storage route of their masks.

Routes::

    GET  /v1/images/{file_id}/annotations    read    the file's masks, oldest first
    POST /v1/images/{file_id}/annotations    write   save masks: additive, all or nothing
    GET  /storage/v1/masks/{annotation_id}   (signed URL, no key)  a mask's PNG

The path file must be one of the caller's organisation's files (else 404, as for a file that
does not exist), confirmed, and an image Pillow can identify (else 400). A save takes
``annotations``, each ``{mask, label, width?, height?, is_human_vetted?, file_id?}`` (a predicted
annotation, with its extra fields, is taken as it is), and ``job_execution_id``:

* all or nothing: every entry is checked and every mask decoded before anything is stored;
  one bad entry refuses the request (422 for a field of the wrong type or missing, 400 naming
  the entry for a mask that is not a base64 PNG, has another size than the image, or does not
  match the ``width``/``height`` it states, and for an entry whose ``file_id`` names another
  file) and nothing is saved;
* additive: masks are added, never replaced; a label (per organisation) is created the first
  time a mask names it and can collect any number of masks;
* measured: ``width``/``height`` (the mask's, which are the image's), ``bbox`` (the box of the
  foreground pixels) and ``foreground_fraction`` are computed from the decoded mask (the rule
  is in :mod:`.pixels`); a predicted annotation's own ``foreground_fraction`` and
  ``confidence`` are not kept;
* attributed: to the calling key (``user``) and to ``job_execution_id`` when given (404 when
  it is not an execution of the organisation), else inside a job script to the running
  execution; reverting that execution removes the masks (``POST /v1/job-executions/{id}/revert``
  counts them in ``deleted_count``);
* ``is_human_vetted`` is stored as sent, false by default: automated saves leave it false,
  and only vetted masks train a segmentation model (:func:`.store.vetted_masks`).

An empty ``annotations`` list saves nothing and answers ``[]`` (a prediction that found no
region can be passed straight in). Each answer's ``mask_url`` is signed for the server's
download URL lifetime; the storage route checks the signature (403 when missing, tampered with
or expired) and needs no key. Without Pillow the annotation routes answer 503 naming the
``images`` extra.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import Principal, principal
from labric.server.core.declare import (
    FILE_ID,
    PUBLIC,
    Body,
    Operation,
    Param,
    Response,
    array,
    ref,
)
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.routing import Router, Routes
from labric.server.core.signing import SignatureError
from labric.server.core.state import STATE, ServerState
from labric.server.files.common import not_found, origin
from labric.server.files.storage_wire import SIGNATURE
from labric.server.images import pixels, store, wire

__all__ = ["MASK_PREFIX", "register"]

ROUTES = Routes(wire.IMAGES)

#: Where mask PNGs are served (outside ``/api``: a signed URL is their whole authorisation).
MASK_PREFIX = "/storage/v1/masks"

_UNAVAILABLE = "Pillow is not installed: pip install 'labric[images]'"


def _pillow(exc: pixels.PillowMissing) -> HTTPError:
    return HTTPError(503, str(exc))


async def _image_size(state: ServerState, org_id: str, file_id: str) -> tuple[int, int]:
    """The size of the organisation's image file ``file_id``.

    Raises:
        HTTPError: 404 for a file the organisation does not have, 400 for one not confirmed or
            not an image, 503 without Pillow.
    """
    row = await state.db.run(records.file_get, file_id, org_id)
    if row is None:
        raise not_found(file_id)
    if row.status != "confirmed" or row.generation == 0:
        raise HTTPError(
            400, f"File {file_id} is not processed yet: confirm its upload before annotating it"
        )
    try:
        size: tuple[int, int] = await state.blobs.run(
            pixels.image_size, state.blobs.object_path(file_id, row.generation)
        )
    except pixels.PillowMissing as exc:
        raise _pillow(exc) from None
    except FileNotFoundError:
        raise not_found(file_id) from None  # deleted meanwhile
    except pixels.NotAnImage as exc:
        raise HTTPError(400, f"File {file_id} cannot be annotated: {exc}") from None
    return size


def _annotation_json(
    state: ServerState, request: web.Request, record: store.AnnotationRecord
) -> dict[str, Any]:
    query, _ = state.signer.sign(
        "GET", f"{MASK_PREFIX}/{record.id}", ttl=state.settings.download_url_ttl
    )
    user = None
    if record.api_key_id is not None and record.key_prefix is not None:
        name = record.key_name or f"API key lbk_{record.key_prefix}_…"
        user = {"id": record.api_key_id, "name": name, "image_url": None}
    bbox = None
    if record.bbox is not None:
        x, y, width, height = record.bbox
        bbox = {"x": x, "y": y, "width": width, "height": height}
    return {
        "id": record.id,
        "label": record.label,
        "mask_url": f"{origin(request)}{MASK_PREFIX}/{record.id}?{query}",
        "width": record.width,
        "height": record.height,
        "is_human_vetted": record.is_human_vetted,
        "foreground_fraction": record.foreground_fraction,
        "bbox": bbox,
        "user": user,
        "file_id": record.file_id,
        "label_id": record.label_id,
        "job_execution_id": record.job_execution_id,
        "created_at": record.created_at,
    }


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/images/{file_id}/annotations",
        scope="read",
        summary="The image's annotations (masks), oldest first",
        description="Each mask_url is a signed, expiring URL of the mask PNG. Masks of "
        "automated (unvetted) saves are listed too.",
        params=(FILE_ID,),
        responses=(Response(schema=array(ref("Annotation"))),),
        errors={
            400: "The file is not processed yet or is not an image",
            404: "No such file",
            503: _UNAVAILABLE,
        },
        hosted=True,
    )
)
async def list_annotations(request: web.Request) -> web.StreamResponse:
    """``GET /v1/images/{file_id}/annotations``: the file's masks, oldest first."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    file_id = request.match_info["file_id"]
    await _image_size(state, org_id, file_id)
    found = await state.db.run(store.list_for_file, file_id, org_id)
    return json_response([_annotation_json(state, request, r) for r in found])


def _read_entries(body: dict[str, Any], file_id: str) -> tuple[list[dict[str, Any]], str | None]:
    """The entries' fields and ``job_execution_id``; 422 for a missing or mistyped field."""
    f = Fields(body)
    items = f.array("annotations", required=True)
    job_execution_id = f.string("job_execution_id", max_length=128)
    entries: list[dict[str, Any]] = []
    if items is not None and len(items) > wire.MAX_ANNOTATIONS:
        f.add(
            ["annotations"],
            f"List should have at most {wire.MAX_ANNOTATIONS} items",
            "too_long",
        )
        items = None
    for index, item in enumerate(items or ()):
        if not isinstance(item, dict):
            f.add(["annotations", index], "Input should be a valid object", "dict_type")
            continue
        ef = Fields(item)
        entry = {
            "mask": ef.string("mask", required=True, max_length=wire.MAX_BODY),
            "label": ef.string("label", required=True, max_length=wire.MAX_LABEL),
            "width": ef.integer("width", minimum=1),
            "height": ef.integer("height", minimum=1),
            "file_id": ef.string("file_id", max_length=128),
            "is_human_vetted": item.get("is_human_vetted"),
        }
        if entry["is_human_vetted"] is not None and not isinstance(entry["is_human_vetted"], bool):
            ef.add(["is_human_vetted"], "Input should be a valid boolean", "bool_type")
        for problem in ef.problems:
            f.add(["annotations", index, *problem["loc"][1:]], problem["msg"], problem["type"])
        entries.append(entry)
    f.check()
    for index, entry in enumerate(entries):
        if entry["file_id"] is not None and entry["file_id"] != file_id:
            raise HTTPError(
                400,
                f"annotations[{index}] names file {entry['file_id']}, not {file_id}: every "
                "entry must be for the file in the path; nothing was saved",
            )
    return entries, job_execution_id


def _measure(entries: list[dict[str, Any]], size: tuple[int, int]) -> list[pixels.Measured]:
    """Decode and check every mask (on a worker thread); the first bad one refuses them all."""
    width, height = size
    measured = []
    for index, entry in enumerate(entries):
        try:
            mask = pixels.decode_mask(entry["mask"])
        except pixels.NotAnImage as exc:
            raise HTTPError(400, f"annotations[{index}]: {exc}; nothing was saved") from None
        if (mask.width, mask.height) != (width, height):
            raise HTTPError(
                400,
                f"annotations[{index}]: the mask is {mask.width} x {mask.height} pixels but the "
                f"image is {width} x {height}; masks must have the image's size; nothing was "
                "saved",
            )
        stated = (entry["width"] or mask.width, entry["height"] or mask.height)
        if stated != (mask.width, mask.height):
            raise HTTPError(
                400,
                f"annotations[{index}]: width/height say {stated[0]} x {stated[1]} but the mask "
                f"is {mask.width} x {mask.height} pixels; nothing was saved",
            )
        measured.append(mask)
    return measured


async def _write_blobs(
    state: ServerState, file_id: str, masks: list[tuple[str, pixels.Measured]]
) -> list[Path]:
    """Write each mask's PNG into place, all at once on the blob threads (so their fsyncs
    overlap); if any fails, remove every one and re-raise."""
    paths = [store.mask_path(state.blobs, file_id, annotation_id) for annotation_id, _ in masks]

    async def write(mask: pixels.Measured, dest: Path) -> None:
        blob = state.blobs.writer()
        try:
            await blob.write(mask.png)
            await blob.finish()
            await blob.install(dest)
        except BaseException:
            blob.abort()
            raise

    outcomes = await asyncio.gather(
        *(write(mask, dest) for (_, mask), dest in zip(masks, paths, strict=True)),
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        await state.blobs.remove(paths)
        raise failed[0]
    return paths


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/images/{file_id}/annotations",
        scope="write",
        summary="Save masks on an image (additive, all or nothing; labels made on first use)",
        description="Each entry is a base64 PNG mask (white on transparent) of the image's "
        "size and a label. One bad entry, or one naming another file_id, refuses the whole "
        "request. Reverting the job execution a mask was saved under removes it.",
        params=(FILE_ID,),
        body=Body(schema=ref("AnnotateRequest"), limit=wire.MAX_BODY),
        responses=(Response(schema=array(ref("Annotation"))),),
        errors={
            400: "Not an image or not processed yet; a mask that is not a base64 PNG of the "
            "image's size; an entry naming another file",
            404: "No such file, or the job execution does not exist",
            503: _UNAVAILABLE,
        },
        hosted=True,
    )
)
async def annotate(request: web.Request) -> web.StreamResponse:
    """``POST /v1/images/{file_id}/annotations``: save masks, all or nothing."""
    state = request.app[STATE]
    who = principal(request)
    file_id = request.match_info["file_id"]
    body = await read_json_object(request, limit=wire.MAX_BODY)
    size = await _image_size(state, who.org_id, file_id)
    entries, job_execution_id = _read_entries(body, file_id)
    try:
        measured = await state.blobs.run(_measure, entries, size)
    except pixels.PillowMissing as exc:
        raise _pillow(exc) from None
    masks = [(uuid.uuid4().hex, m) for m in measured]
    await _check_execution(state, who, job_execution_id)
    written = await _write_blobs(state, file_id, masks)
    new = [
        store.NewMask(
            id=annotation_id,
            label=entry["label"],
            width=mask.width,
            height=mask.height,
            is_human_vetted=bool(entry["is_human_vetted"]),
            foreground_fraction=mask.foreground_fraction,
            bbox=mask.bbox,
        )
        for (annotation_id, mask), entry in zip(masks, entries, strict=True)
    ]
    now = state.now()

    def save(conn: Any) -> list[store.AnnotationRecord] | None:
        # Checked again in the saving transaction: the file may have gone meanwhile.
        if records.file_get(conn, file_id, who.org_id) is None:
            return None
        execution = job_execution_id or who.job_execution_id
        if execution is not None and records.execution_get(conn, who.org_id, execution) is None:
            execution = None  # the job's own execution, deleted with its job meanwhile
        return store.insert(
            conn,
            org_id=who.org_id,
            file_id=file_id,
            masks=new,
            label_ids=[uuid.uuid4().hex for _ in new],
            api_key_id=who.key_id,
            job_execution_id=execution,
            now=now,
        )

    try:
        saved = await state.db.run(save)
    except BaseException:
        await state.blobs.remove(written)
        raise
    if saved is None:
        await state.blobs.remove(written)
        raise not_found(file_id)
    return json_response([_annotation_json(state, request, r) for r in saved])


async def _check_execution(state: ServerState, who: Principal, execution_id: str | None) -> None:
    if execution_id is None:
        return

    def exists(conn: Any) -> bool:
        records.expire_executions(conn, state.now())
        return records.execution_get(conn, who.org_id, execution_id) is not None

    if not await state.db.run(exists):
        raise HTTPError(404, f"Job execution {execution_id} not found")


@ROUTES.route(
    Operation(
        method="GET",
        path=MASK_PREFIX + "/{annotation_id}",
        scope=PUBLIC,
        storage=True,
        summary="A mask's PNG (signed URL from an annotation's mask_url)",
        params=(
            Param(name="annotation_id", where="path", required=True, description="The mask"),
            *SIGNATURE,
        ),
        responses=(
            Response(
                description="The mask: white on transparent",
                schema={"type": "string", "contentMediaType": "image/png"},
                media_type="image/png",
            ),
        ),
        errors={
            403: "The signature is missing, tampered with or expired",
            404: "The annotation is gone (its file deleted or its execution reverted)",
        },
        tag="storage",
    )
)
async def get_mask(request: web.Request) -> web.StreamResponse:
    """``GET /storage/v1/masks/{annotation_id}``: the mask PNG, for a signed URL only."""
    state = request.app[STATE]
    try:
        state.signer.verify(
            request.method, request.rel_url.raw_path, request.query, request.headers
        )
    except SignatureError as exc:
        raise HTTPError(403, str(exc), close=True) from None
    annotation_id = request.match_info["annotation_id"]
    file_id = await state.db.run(store.annotation_file, annotation_id)
    if file_id is None:
        raise HTTPError(404, f"No mask {annotation_id}")
    try:
        data = await state.blobs.run(
            store.mask_path(state.blobs, file_id, annotation_id).read_bytes
        )
    except FileNotFoundError:
        raise HTTPError(404, f"No mask {annotation_id}") from None
    return web.Response(
        body=data,
        content_type="image/png",
        headers={"Cache-Control": "private, max-age=0", "X-Content-Type-Options": "nosniff"},
    )


def register(router: Router) -> None:
    """Add the image annotation routes and the mask storage route."""
    router.add(ROUTES)

"""The experiments API (local additions; design.md 3.6).

Routes::

    GET    /v1/experiments                        read    status, tag, query; limit/cursor + Link
    POST   /v1/experiments                        write   create
    GET    /v1/experiments/{id}                   read
    PATCH  /v1/experiments/{id}                   write   only the fields sent change
    DELETE /v1/experiments/{id}                   write   its links go with it, files stay
    GET    /v1/experiments/{id}/files             read    linked files, newest first, paginated
    POST   /v1/experiments/{id}/files             write   {"file_ids": [...]}: link files
    DELETE /v1/experiments/{id}/files/{file_id}   write   unlink one file
    GET    /v1/experiments/{id}/rows              read    linked dataset rows, oldest link first
    POST   /v1/experiments/{id}/rows              write   {"rows": [{"table", "row_id"}]}: link

An experiment has a name, a description, a status (``planned``, ``running``, ``completed``,
``failed``, ``archived``; new experiments are ``planned``), tags (distinct strings), metadata (a
JSON object) and start and end times. Moving to ``running`` sets ``started_at`` to now, and moving
to ``completed`` or ``failed`` sets ``ended_at`` to now, when the time is not set yet and the
request does not give it. ``ended_at`` may not be before ``started_at``.

Each experiment is also the ``experiment`` platform table's row (``core_experiment``), written
after every change and deleted with it, so ``tools/read``, ``tools/query`` and dataset foreign
keys see exactly these records. Linking rows checks them there (``core_experiment_row``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.declare import (
    FILE_ID,
    PAGE,
    Body,
    Operation,
    Param,
    Response,
    array,
    ref,
    string,
)
from labric.server.core.fields import (
    json_object,
    stored_time,
)
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.datasets import DATASETS, Busy
from labric.server.datasets.platform import busy_error, delete_platform_row, upsert_platform_row
from labric.server.experiments import store, wire
from labric.server.experiments.store import STATUSES
from labric.server.files.common import file_info

__all__ = ["MAX_LINKS", "MAX_TAGS", "experiment_json", "register"]

#: The most tags an experiment may carry.
MAX_TAGS = 100
#: The most files or rows one link request may name.
MAX_LINKS = 1000
_MAX_TAG = 100
_MAX_NAME = 255
_MAX_DESCRIPTION = 10_000


ROUTES = Routes(wire.EXPERIMENTS)


def experiment_json(row: store.ExperimentRecord) -> dict[str, Any]:
    """An experiment as the routes answer it (also the platform row, same names)."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "tags": row.tags,
        "metadata": row.metadata,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _not_found(experiment_id: str) -> HTTPError:
    return HTTPError(404, f"Experiment {experiment_id} not found")


def _status(f: Fields, name: str = "status") -> str | None:
    value = f.string(name, max_length=32)
    if value is not None and value not in STATUSES:
        f.add([name], "Input should be " + ", ".join(repr(s) for s in STATUSES), "enum")
        return None
    return value


def _tags(f: Fields) -> list[str] | None:
    values = f.array("tags")
    if values is None:
        return None
    if len(values) > MAX_TAGS:
        f.add(["tags"], f"At most {MAX_TAGS} tags", "too_long")
        return None
    tags: list[str] = []
    for index, tag in enumerate(values):
        if not isinstance(tag, str) or not tag.strip() or len(tag) > _MAX_TAG:
            f.add(["tags", index], f"A tag is a non-empty string of at most {_MAX_TAG} characters")
            continue
        if tag.strip() not in tags:
            tags.append(tag.strip())
    return tags


def _read_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The experiment fields a body sets (absent and ``null`` ones left out); 422 if invalid."""
    f = Fields(body)
    fields: dict[str, Any] = {}
    name = f.string("name", required=creating, max_length=_MAX_NAME)
    if name is not None:
        if name.strip():
            fields["name"] = name.strip()
        else:
            f.add(["name"], "String should not be empty", "string_too_short")
    description = f.string("description", max_length=_MAX_DESCRIPTION)
    if description is not None:
        fields["description"] = description or None  # "" clears it
    for key, value in (
        ("status", _status(f)),
        ("tags", _tags(f)),
        ("metadata", json_object(f, body, "metadata")),
        ("started_at", stored_time(f, "started_at")),
        ("ended_at", stored_time(f, "ended_at")),
    ):
        if value is not None:
            fields[key] = value
    f.check()
    return fields


def _apply_status_times(
    fields: dict[str, Any], current: store.ExperimentRecord | None, now: str
) -> None:
    """Fill ``started_at``/``ended_at`` when the status moves there and the time is unset."""
    status = fields.get("status")
    if status is None or (current is not None and current.status == status):
        return
    if status == "running":
        key, value = "started_at", None if current is None else current.started_at
    elif status in ("completed", "failed"):
        key, value = "ended_at", None if current is None else current.ended_at
    else:
        return
    if key not in fields and value is None:
        fields[key] = now


def _check_times(started_at: str | None, ended_at: str | None) -> None:
    if started_at is not None and ended_at is not None and ended_at < started_at:
        raise HTTPError(
            422,
            [
                {
                    "loc": ["body", "ended_at"],
                    "msg": f"ended_at must not be before started_at ({started_at})",
                    "type": "value_error",
                }
            ],
        )


def _platform_row(row: store.ExperimentRecord) -> dict[str, Any]:
    return experiment_json(row)


# -- list, create, get, update, delete -----------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/experiments",
        scope="read",
        summary="Experiments, newest first, by status, tag and search terms",
        params=(
            Param(name="status", where="query", schema=string(enum=wire.STATUSES)),
            Param(name="tag", where="query", schema=string(maxLength=100)),
            Param(
                name="query",
                where="query",
                schema=string(maxLength=2048),
                description="Terms that must all appear in the name or description",
            ),
            *PAGE,
        ),
        responses=(Response(schema=array(ref("Experiment"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
    )
)
async def list_experiments(request: web.Request) -> web.StreamResponse:
    """``GET /v1/experiments``: newest first, filtered by ``status``, ``tag`` and ``query``
    (space-separated terms that must all appear in the name or description, any case)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    q = Fields(request.query, "query")
    status = _status(q)
    tag = q.string("tag", max_length=_MAX_TAG) or None
    query = q.string("query", max_length=2048) or ""
    wanted = listing(state, q)
    terms = [t.casefold() for t in query.split()]

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.list_experiments(
                conn, org_id, status=status, tag=tag, terms=terms, after=after, limit=n
            )
        )
        return [((row.created_at, row.rowid), experiment_json(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/experiments",
        scope="write",
        summary="Create an experiment (status planned unless given)",
        body=Body(schema=ref("CreateExperimentRequest")),
        responses=(Response(schema=ref("Experiment")),),
    )
)
async def create_experiment(request: web.Request) -> web.StreamResponse:
    """``POST /v1/experiments``: ``name`` required; ``status`` defaults to ``planned``."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    fields = _read_fields(await read_json_object(request), creating=True)
    now = state.now()
    fields.setdefault("status", "planned")
    fields.setdefault("tags", [])
    fields.setdefault("metadata", {})
    _apply_status_times(fields, None, now)
    _check_times(fields.get("started_at"), fields.get("ended_at"))
    experiment_id = records.new_id()
    row = await state.db.run(store.insert_experiment, org_id, experiment_id, fields, now)
    try:
        await upsert_platform_row(request, org_id, "experiment", _platform_row(row))
    except BaseException:
        # Without its platform row the experiment would be half made: take it back.
        await state.db.run(store.delete_experiment, org_id, experiment_id)
        raise
    return json_response(experiment_json(row))


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/experiments/{experiment_id}",
        scope="read",
        summary="One experiment",
        params=(wire.EXPERIMENT_ID,),
        responses=(Response(schema=ref("Experiment")),),
        errors=wire.MISSING,
    )
)
async def get_experiment(request: web.Request) -> web.StreamResponse:
    """``GET /v1/experiments/{experiment_id}``."""
    state = request.app[STATE]
    experiment_id = request.match_info["experiment_id"]
    row = await state.db.run(store.get_experiment, principal(request).org_id, experiment_id)
    if row is None:
        raise _not_found(experiment_id)
    return json_response(experiment_json(row))


@ROUTES.route(
    Operation(
        method="PATCH",
        path="/v1/experiments/{experiment_id}",
        scope="write",
        summary="Change the fields sent",
        params=(wire.EXPERIMENT_ID,),
        body=Body(schema=ref("UpdateExperimentRequest"), required=False),
        responses=(Response(schema=ref("Experiment")),),
        errors=wire.MISSING,
    )
)
async def update_experiment(request: web.Request) -> web.StreamResponse:
    """``PATCH /v1/experiments/{experiment_id}``: only the fields sent change; ``tags`` and
    ``metadata`` are replaced whole; ``description: ""`` clears it."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    fields = _read_fields(await read_json_object(request, optional=True), creating=False)
    now = state.now()

    def update(conn: Any) -> store.ExperimentRecord | None:
        current = store.get_experiment(conn, org_id, experiment_id)
        if current is None:
            return None
        _apply_status_times(fields, current, now)
        _check_times(
            fields.get("started_at", current.started_at), fields.get("ended_at", current.ended_at)
        )
        if fields:
            store.update_experiment(conn, experiment_id, fields, now)
        return store.get_experiment(conn, org_id, experiment_id)

    row = await state.db.run(update)
    if row is None:
        raise _not_found(experiment_id)
    # Written even when nothing changed, so a retried update also repairs a missed write.
    await upsert_platform_row(request, org_id, "experiment", _platform_row(row))
    return json_response(experiment_json(row))


@ROUTES.route(
    Operation(
        method="DELETE",
        path="/v1/experiments/{experiment_id}",
        scope="write",
        summary="Delete an experiment and its links (the files stay)",
        params=(wire.EXPERIMENT_ID,),
        responses=(Response(status=204, description="Deleted"),),
        errors={**wire.MISSING, 409: "Dataset rows require it"},
    )
)
async def delete_experiment(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/experiments/{experiment_id}``: the record, its platform row and links."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    if await state.db.run(store.get_experiment, org_id, experiment_id) is None:
        raise _not_found(experiment_id)
    # The platform row first: dataset rows that require it refuse the delete before anything
    # is gone (its row links go with it).
    await delete_platform_row(request, org_id, "experiment", experiment_id)
    if not await state.db.run(store.delete_experiment, org_id, experiment_id):
        raise _not_found(experiment_id)
    return web.Response(status=204)


# -- files ---------------------------------------------------------------------------------


async def _require(request: web.Request, org_id: str, experiment_id: str) -> None:
    found = await request.app[STATE].db.run(store.get_experiment, org_id, experiment_id)
    if found is None:
        raise _not_found(experiment_id)


def _ids(f: Fields, name: str) -> list[str]:
    values = f.array(name, required=True)
    if values is None:
        return []
    if len(values) > MAX_LINKS:
        f.add([name], f"At most {MAX_LINKS} per request", "too_long")
        return []
    ids = []
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value or len(value) > 128:
            f.add([name, index], "Input should be an id (a non-empty string)", "string_type")
        elif value not in ids:
            ids.append(value)
    return ids


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/experiments/{experiment_id}/files",
        scope="read",
        summary="The linked files, newest first",
        params=(wire.EXPERIMENT_ID, *PAGE),
        responses=(Response(schema=array(ref("FileInfo"))),),
        errors={**wire.MISSING, 400: "Invalid cursor"},
        paginated=True,
    )
)
async def list_files(request: web.Request) -> web.StreamResponse:
    """``GET /v1/experiments/{experiment_id}/files``: the linked files, as ``GET /v1/files``
    lists them (newest first)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    wanted = listing(state, Fields(request.query, "query"))
    await _require(request, org_id, experiment_id)

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.experiment_files(conn, experiment_id, after=after, limit=n)
        )
        return [((row.created_at, row.seq), file_info(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/experiments/{experiment_id}/files",
        scope="write",
        summary="Link confirmed files (all or none)",
        params=(wire.EXPERIMENT_ID,),
        body=Body(schema=ref("LinkFilesRequest")),
        responses=(Response(schema=ref("ExperimentLinks")),),
        errors={404: "No such experiment, or a file does not exist (nothing was linked)"},
    )
)
async def link_files(request: web.Request) -> web.StreamResponse:
    """``POST /v1/experiments/{experiment_id}/files``: link confirmed files of the
    organisation (404 naming the first unknown one; then nothing is linked)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    f = Fields(await read_json_object(request))
    file_ids = _ids(f, "file_ids")
    f.check()
    now = state.now()

    def link(conn: Any) -> tuple[int, int] | str | None:
        if store.get_experiment(conn, org_id, experiment_id) is None:
            return None
        missing = store.missing_files(conn, org_id, file_ids)
        if missing:
            return missing[0]
        return store.link_files(conn, experiment_id, file_ids, now)

    done = await state.db.run(link)
    if done is None:
        raise _not_found(experiment_id)
    if isinstance(done, str):
        raise HTTPError(404, f"File {done} not found (nothing was linked)")
    return json_response({"linked": done[0], "total": done[1]})


@ROUTES.route(
    Operation(
        method="DELETE",
        path="/v1/experiments/{experiment_id}/files/{file_id}",
        scope="write",
        summary="Unlink one file (the file stays)",
        params=(wire.EXPERIMENT_ID, FILE_ID),
        responses=(Response(status=204, description="Unlinked"),),
        errors={404: "No such experiment, or the file is not linked to it"},
    )
)
async def unlink_file(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/experiments/{experiment_id}/files/{file_id}``: the file itself stays."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    file_id = request.match_info["file_id"]
    await _require(request, org_id, experiment_id)
    if not await state.db.run(store.unlink_file, experiment_id, file_id):
        raise HTTPError(404, f"File {file_id} is not linked to experiment {experiment_id}")
    return web.Response(status=204)


# -- dataset rows --------------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/experiments/{experiment_id}/rows",
        scope="read",
        summary="The linked dataset rows, oldest link first",
        params=(wire.EXPERIMENT_ID,),
        responses=(Response(schema=array(ref("ExperimentRow"))),),
        errors=wire.MISSING,
    )
)
async def list_rows(request: web.Request) -> web.StreamResponse:
    """``GET /v1/experiments/{experiment_id}/rows``: ``[{"table", "row_id"}]``, oldest first."""
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    await _require(request, org_id, experiment_id)
    links = await request.app[DATASETS].experiment_rows(org_id, experiment_id)
    return json_response([{"table": table, "row_id": row_id} for table, row_id in links])


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/experiments/{experiment_id}/rows",
        scope="write",
        summary="Link dataset rows (all or none)",
        params=(wire.EXPERIMENT_ID,),
        body=Body(schema=ref("LinkRowsRequest")),
        responses=(Response(schema=ref("ExperimentLinks")),),
        errors=wire.MISSING,
    )
)
async def link_rows(request: web.Request) -> web.StreamResponse:
    """``POST /v1/experiments/{experiment_id}/rows``: link dataset rows (all or none; 422
    naming an unknown table or row)."""
    org_id = principal(request).org_id
    experiment_id = request.match_info["experiment_id"]
    f = Fields(await read_json_object(request))
    items = f.array("rows", required=True) or []
    if len(items) > MAX_LINKS:
        f.add(["rows"], f"At most {MAX_LINKS} per request", "too_long")
        items = []
    links: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        table = item.get("table") if isinstance(item, dict) else None
        row_id = item.get("row_id") if isinstance(item, dict) else None
        if isinstance(row_id, int) and not isinstance(row_id, bool):
            row_id = str(row_id)
        if not isinstance(table, str) or not table or not isinstance(row_id, str) or not row_id:
            f.add(["rows", index], 'Expected {"table": name, "row_id": id}', "value_error")
            continue
        links.append((table, row_id))
    f.check()
    await _require(request, org_id, experiment_id)
    store_ = request.app[DATASETS]
    try:
        added = await store_.link_experiment_rows(org_id, experiment_id, links)
    except Busy:
        raise busy_error() from None
    except ValueError as exc:
        raise HTTPError(
            422,
            [
                {
                    "loc": ["body", "rows"],
                    "msg": f"{exc} (nothing was linked)",
                    "type": "value_error",
                }
            ],
        ) from None
    total = len(await store_.experiment_rows(org_id, experiment_id))
    return json_response({"linked": added, "total": total})


def register(router: Router) -> None:
    """Add the experiments routes."""
    router.add(ROUTES)

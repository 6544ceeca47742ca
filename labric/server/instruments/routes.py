"""The instruments API: pairing, list/get/update/delete, device status reports and history.

Routes (all local additions except the hosted ``GET .../device-status``)::

    GET    /v1/instruments                            read    newest first, limit/cursor + Link
    POST   /v1/instruments                            write   create: instrument + pairing code
    POST   /v1/instruments/pair                       none    a device: pairing code -> its key
    GET    /v1/instruments/{id}                       read
    PATCH  /v1/instruments/{id}                       write   name, description, metadata
    DELETE /v1/instruments/{id}[?force=true]          write   409 while files are attached
    POST   /v1/instruments/{id}/pairing-code          write   a new code (pair a new device)
    POST   /v1/instruments/{id}/device-status         write   a device reports its status
    GET    /v1/instruments/{id}/device-status         read    hosted DeviceStatusHistorySchema

Pairing, the report stream (heartbeat every :data:`HEARTBEAT_INTERVAL` seconds, offline after
:data:`OFFLINE_AFTER` seconds of silence) and how periods are built are described in
:mod:`labric.server.instruments.store`. A paired device's key may report the status of its own
instrument only, and its uploads are attached to that instrument unless they name another; it
cannot create, change or delete instruments or issue pairing codes (403), so a device's key never
lets its holder replace another instrument's device.

History window (hosted semantics): ``end_time`` defaults to now and is capped at now;
``start_time`` defaults to ``end_time`` minus 7 days; a ``start_time`` after now (a window
wholly in the future) is moved to now, so the window holds only the present instant. Every such
adjustment, and periods left out beyond :data:`MAX_PERIODS`, is explained in ``notes``. Periods
are clipped to the window.

Each instrument is also the ``instrument`` platform table's row (``core_instrument``), written
after every change, so dataset tables can reference it and SQL can join it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.db import iso
from labric.server.core.declare import (
    PAGE,
    PUBLIC,
    QUERY_BOOLEAN,
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
    query_boolean,
    time_field,
)
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.datasets.platform import delete_platform_row, upsert_platform_row
from labric.server.instruments import store, wire
from labric.server.instruments.store import (
    DEVICE_STATUSES,
    HEARTBEAT_INTERVAL,
    MAX_PERIODS,
    OFFLINE_AFTER,
)

__all__ = ["DEFAULT_WINDOW", "instrument_json", "register"]

#: Seconds of history ``GET .../device-status`` covers when no ``start_time`` is given.
DEFAULT_WINDOW = 7 * 24 * 3600.0
_MAX_NAME = 255
#: The earliest time a window may start at (0001-01-01T00:00:00Z, the first one ISO 8601 writes).
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_MAX_DESCRIPTION = 10_000


ROUTES = Routes(wire.INSTRUMENTS)


def instrument_json(row: store.InstrumentRecord) -> dict[str, Any]:
    """An instrument as the routes answer it."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "metadata": row.metadata,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "paired_at": row.paired_at,
        "status": row.status,
        "last_seen_at": row.last_seen_at,
        "app_version": row.app_version,
    }


def _platform_row(row: store.InstrumentRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "metadata": row.metadata,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _period_json(period: store.Period) -> dict[str, Any]:
    return {
        "status": period.status,
        "first_seen": period.first_seen,
        "last_seen": period.last_seen,
        "app_version": period.app_version,
        "is_watching": period.is_watching,
    }


def _current_json(current: store.Current | None) -> dict[str, Any] | None:
    return None if current is None else {"value": current.value, "since": current.since}


def _not_found(instrument_id: str) -> HTTPError:
    return HTTPError(404, f"Instrument {instrument_id} not found")


def _managing(request: web.Request) -> str:
    """The caller's organisation, refusing a paired device's key (403).

    A device speaks for its own instrument; creating, changing or deleting instruments, or issuing
    pairing codes (which would let it replace other devices), needs a person's key.
    """
    who = principal(request)
    if who.instrument_id is not None:
        raise HTTPError(
            403,
            "A paired device's key cannot manage instruments; use an API key of the organisation",
        )
    return who.org_id


def _pairing_json(row: store.InstrumentRecord, pairing: store.Pairing) -> dict[str, Any]:
    return {
        "instrument": instrument_json(row),
        "pairing_code": pairing.code,
        "expires_at": pairing.expires_at,
    }


# -- list, create, get, update, delete -----------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/instruments",
        scope="read",
        summary="Instruments, newest first",
        params=PAGE,
        responses=(Response(schema=array(ref("Instrument"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
    )
)
async def list_instruments(request: web.Request) -> web.StreamResponse:
    """``GET /v1/instruments``: the organisation's instruments, newest first."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    wanted = listing(state, Fields(request.query, "query"))
    now = state.clock()

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.list_instruments(conn, org_id, after=after, limit=n, now=now)
        )
        return [((row.created_at, row.rowid), instrument_json(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/instruments",
        scope="write",
        summary="Create an instrument and a one-time pairing code for its device",
        body=Body(schema=ref("CreateInstrumentRequest")),
        responses=(Response(schema=ref("InstrumentPairing")),),
    )
)
async def create_instrument(request: web.Request) -> web.StreamResponse:
    """``POST /v1/instruments``: a new instrument and a one-time pairing code for its device."""
    state = request.app[STATE]
    org_id = _managing(request)
    body = await read_json_object(request)
    f = Fields(body)
    name = f.string("name", required=True, max_length=_MAX_NAME)
    description = f.string("description", max_length=_MAX_DESCRIPTION)
    metadata = json_object(f, body, "metadata")
    f.check()
    assert name is not None
    now = state.clock()

    def create(conn: Any) -> tuple[store.InstrumentRecord, store.Pairing]:
        instrument_id = store.insert_instrument(
            conn,
            org_id,
            name=name.strip(),
            description=description or None,
            metadata=metadata,
            now=iso(now),
        )
        pairing = store.issue_pairing_code(conn, instrument_id, now=now)
        row = store.get_instrument(conn, org_id, instrument_id, now)
        assert row is not None
        return row, pairing

    row, pairing = await state.db.run(create)
    try:
        await upsert_platform_row(request, org_id, "instrument", _platform_row(row))
    except BaseException:
        # Without its platform row the instrument would be half made: take it back.
        await state.db.run(lambda conn: store.delete_instrument(conn, org_id, row.id, force=True))
        raise
    return json_response(_pairing_json(row, pairing))


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/instruments/{instrument_id}",
        scope="read",
        summary="One instrument",
        params=(wire.INSTRUMENT_ID,),
        responses=(Response(schema=ref("Instrument")),),
        errors=wire.MISSING,
    )
)
async def get_instrument(request: web.Request) -> web.StreamResponse:
    """``GET /v1/instruments/{instrument_id}``."""
    state = request.app[STATE]
    instrument_id = request.match_info["instrument_id"]
    row = await state.db.run(
        store.get_instrument, principal(request).org_id, instrument_id, state.clock()
    )
    if row is None:
        raise _not_found(instrument_id)
    return json_response(instrument_json(row))


@ROUTES.route(
    Operation(
        method="PATCH",
        path="/v1/instruments/{instrument_id}",
        scope="write",
        summary="Change the fields sent",
        params=(wire.INSTRUMENT_ID,),
        body=Body(schema=ref("UpdateInstrumentRequest"), required=False),
        responses=(Response(schema=ref("Instrument")),),
        errors=wire.MISSING,
    )
)
async def update_instrument(request: web.Request) -> web.StreamResponse:
    """``PATCH /v1/instruments/{instrument_id}``: only the fields sent change
    (``description: ""`` clears it; ``metadata`` is replaced whole)."""
    state = request.app[STATE]
    org_id = _managing(request)
    instrument_id = request.match_info["instrument_id"]
    body = await read_json_object(request, optional=True)
    f = Fields(body)
    name = f.string("name", max_length=_MAX_NAME)
    if name is not None and not name.strip():
        f.add(["name"], "String should not be empty", "string_too_short")
    description = f.string("description", max_length=_MAX_DESCRIPTION)
    metadata = json_object(f, body, "metadata")
    f.check()
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name.strip()
    if description is not None:
        changes["description"] = description or None
    if metadata is not None:
        changes["metadata"] = metadata
    now = state.clock()

    def update(conn: Any) -> store.InstrumentRecord | None:
        if store.get_instrument(conn, org_id, instrument_id, now) is None:
            return None
        if changes:
            store.update_instrument(conn, instrument_id, {**changes, "updated_at": iso(now)})
        return store.get_instrument(conn, org_id, instrument_id, now)

    row = await state.db.run(update)
    if row is None:
        raise _not_found(instrument_id)
    # Written even when nothing changed, so a retried update also repairs a missed write.
    await upsert_platform_row(request, org_id, "instrument", _platform_row(row))
    return json_response(instrument_json(row))


@ROUTES.route(
    Operation(
        method="DELETE",
        path="/v1/instruments/{instrument_id}",
        scope="write",
        summary="Delete an instrument (refused while files are attached, unless force)",
        params=(
            wire.INSTRUMENT_ID,
            Param(
                name="force",
                where="query",
                schema=QUERY_BOOLEAN,
                description="Delete even with files attached (they are kept, detached)",
            ),
        ),
        responses=(Response(status=204, description="Deleted"),),
        errors={
            **wire.MISSING,
            409: "Files are attached (without force), or dataset rows require it",
        },
    )
)
async def delete_instrument(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/instruments/{instrument_id}``: refused (409) while files are attached,
    unless ``force=true``; the files are then kept, detached from any instrument."""
    state = request.app[STATE]
    org_id = _managing(request)
    instrument_id = request.match_info["instrument_id"]
    q = Fields(request.query, "query")
    force = bool(query_boolean(q, request.query, "force"))
    q.check()

    def check(conn: Any) -> int | None:
        if not records.instrument_exists(conn, org_id, instrument_id):
            return None
        return store.attached_files(conn, instrument_id)

    files = await state.db.run(check)
    if files is None:
        raise _not_found(instrument_id)
    if files and not force:
        raise _has_files(instrument_id, files)
    # The platform row first: dataset rows that require it refuse the delete before anything
    # is gone.
    await delete_platform_row(request, org_id, "instrument", instrument_id)
    done = await state.db.run(
        lambda conn: store.delete_instrument(conn, org_id, instrument_id, force=force)
    )
    if done.outcome == "missing":
        raise _not_found(instrument_id)
    if done.outcome == "has_files":  # a file arrived in between: keep the record after all
        row = await state.db.run(store.get_instrument, org_id, instrument_id, state.clock())
        if row is not None:
            await upsert_platform_row(request, org_id, "instrument", _platform_row(row))
        raise _has_files(instrument_id, done.files)
    return web.Response(status=204)


def _has_files(instrument_id: str, count: int) -> HTTPError:
    return HTTPError(
        409,
        f"Instrument {instrument_id} has {count} file(s) attached; delete with force=true to "
        "delete it anyway (its files are kept, no longer attached to an instrument)",
    )


# -- pairing -------------------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/instruments/{instrument_id}/pairing-code",
        scope="write",
        summary="A fresh one-time pairing code (earlier unused codes stop working)",
        params=(wire.INSTRUMENT_ID,),
        responses=(Response(schema=ref("InstrumentPairing")),),
        errors=wire.MISSING,
    )
)
async def new_pairing_code(request: web.Request) -> web.StreamResponse:
    """``POST /v1/instruments/{instrument_id}/pairing-code``: a fresh one-time code; earlier
    unused codes stop working."""
    state = request.app[STATE]
    org_id = _managing(request)
    instrument_id = request.match_info["instrument_id"]
    now = state.clock()

    def issue(conn: Any) -> tuple[store.InstrumentRecord, store.Pairing] | None:
        row = store.get_instrument(conn, org_id, instrument_id, now)
        if row is None:
            return None
        return row, store.issue_pairing_code(conn, instrument_id, now=now)

    issued = await state.db.run(issue)
    if issued is None:
        raise _not_found(instrument_id)
    return json_response(_pairing_json(*issued))


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/instruments/pair",
        scope=PUBLIC,
        summary="A device exchanges a pairing code for its key (no API key)",
        params=(
            Param(
                name="Idempotency-Key",
                where="header",
                schema=string(maxLength=255),
                description="A repeated exchange with the same key gets the same device key",
            ),
        ),
        body=Body(schema=ref("PairRequest")),
        responses=(Response(schema=ref("PairedDevice")),),
        errors={400: "The code is unknown, expired or already used"},
    )
)
async def pair_device(request: web.Request) -> web.StreamResponse:
    """``POST /v1/instruments/pair`` (no API key): exchange a pairing code for a device key.

    Answers ``{"api_key", "scopes", "organization_id", "instrument"}``; the key is shown only
    here. An unknown, expired or already used code answers 400.
    """
    state = request.app[STATE]
    body = await read_json_object(request)
    f = Fields(body)
    code = f.string("pairing_code", required=True, max_length=64)
    f.check()
    assert code is not None
    now = state.clock()
    idem = request.headers.get(IDEMPOTENCY_HEADER) or None

    def redeem(conn: Any) -> tuple[store.Redeemed, store.InstrumentRecord | None]:
        done = store.redeem_pairing_code(conn, code, idempotency_key=idem, now=now)
        if done.error is not None:
            return done, None
        assert done.org_id is not None
        assert done.instrument_id is not None
        return done, store.get_instrument(conn, done.org_id, done.instrument_id, now)

    done, row = await state.db.run(redeem)
    if done.error is not None:
        raise HTTPError(400, done.error)
    assert row is not None
    return json_response(
        {
            "api_key": done.key,
            "scopes": ["read", "write"],
            "organization_id": done.org_id,
            "instrument": instrument_json(row),
        }
    )


# -- device status -------------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/instruments/{instrument_id}/device-status",
        scope="write",
        summary="A device reports its status",
        params=(wire.INSTRUMENT_ID,),
        body=Body(schema=ref("DeviceStatusRequest")),
        responses=(Response(schema=ref("DeviceStatusReport")),),
        errors={**wire.MISSING, 403: "A device's key reports for its own instrument only"},
    )
)
async def report_status(request: web.Request) -> web.StreamResponse:
    """``POST /v1/instruments/{instrument_id}/device-status``: one report from a device."""
    state = request.app[STATE]
    who = principal(request)
    instrument_id = request.match_info["instrument_id"]
    body = await read_json_object(request)
    f = Fields(body)
    status = f.string("status", required=True, max_length=32)
    if status is not None and status not in DEVICE_STATUSES:
        f.add(["status"], "Input should be 'online', 'offline' or 'error'", "enum")
    app_version = f.string("app_version", max_length=128)
    is_watching = body.get("is_watching")
    if is_watching is not None and not isinstance(is_watching, bool):
        f.add(["is_watching"], "Input should be a valid boolean", "bool_type")
    f.check()
    assert status is not None
    if who.instrument_id is not None and who.instrument_id != instrument_id:
        raise HTTPError(403, f"This device's key reports for instrument {who.instrument_id} only")
    now = state.clock()

    def report(
        conn: Any,
    ) -> tuple[store.InstrumentRecord, store.Period, store.Current | None] | None:
        if not records.instrument_exists(conn, who.org_id, instrument_id):
            return None
        period = store.report_status(
            conn,
            instrument_id,
            status=status,
            app_version=app_version or None,
            is_watching=is_watching,
            now=now,
        )
        row = store.get_instrument(conn, who.org_id, instrument_id, now)
        assert row is not None
        return row, period, store.current_status(conn, instrument_id, now)

    reported = await state.db.run(report)
    if reported is None:
        raise _not_found(instrument_id)
    row, period, current = reported
    return json_response(
        {
            "instrument": {"id": row.id, "name": row.name},
            "current_status": _current_json(current),
            "period": _period_json(period),
            "heartbeat_interval_seconds": int(HEARTBEAT_INTERVAL),
            "offline_after_seconds": int(OFFLINE_AFTER),
        }
    )


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/instruments/{instrument_id}/device-status",
        scope="read",
        summary="The device's status periods in a window (default: the last 7 days)",
        params=(
            wire.INSTRUMENT_ID,
            Param(name="start_time", where="query", schema=string(maxLength=64)),
            Param(name="end_time", where="query", schema=string(maxLength=64)),
        ),
        responses=(Response(schema=ref("DeviceStatusHistory")),),
        errors=wire.MISSING,
        hosted=True,
    )
)
async def status_history(request: web.Request) -> web.StreamResponse:
    """``GET /v1/instruments/{instrument_id}/device-status``: the hosted history."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    instrument_id = request.match_info["instrument_id"]
    q = Fields(request.query, "query")
    start = time_field(q, "start_time")
    end = time_field(q, "end_time")
    q.check()
    now = state.clock()
    notes: list[str] = []
    if end is not None and end > now:
        notes.append(f"end_time {iso(end)} is in the future; it was capped at now ({iso(now)})")
        asked_end: float | None = end
        end = now
    else:
        asked_end = end
    if end is None:
        end = now
    if start is None:
        start = max(end - DEFAULT_WINDOW, _EARLIEST)
    elif asked_end is not None and start > asked_end:
        raise HTTPError(
            422,
            [
                {
                    "loc": ["query", "start_time"],
                    "msg": "start_time must not be after end_time",
                    "type": "value_error",
                }
            ],
        )
    elif start > now:
        notes.append(
            f"start_time {iso(start)} is in the future; it was moved to now, so the window "
            "holds only the present instant"
        )
        start = now

    def read(conn: Any) -> tuple[store.InstrumentRecord, store.History] | None:
        row = store.get_instrument(conn, org_id, instrument_id, now)
        if row is None:
            return None
        return row, store.history(conn, instrument_id, start=start, end=end, now=now)

    found = await state.db.run(read)
    if found is None:
        raise _not_found(instrument_id)
    row, hist = found
    if hist.omitted:
        notes.append(
            f"{hist.omitted} older period(s) in the window were left out: at most "
            f"{MAX_PERIODS} are returned, the most recent kept"
        )
    return json_response(
        {
            "instrument": {"id": row.id, "name": row.name},
            "start_time": iso(start),
            "end_time": iso(end),
            "current_status": _current_json(hist.current),
            "statuses": [_period_json(p) for p in hist.periods],
            "notes": notes,
        }
    )


def register(router: Router) -> None:
    """Add the instruments routes."""
    router.add(ROUTES)

"""Admin routes (``admin`` scope): fault injection, dataset limits and counters, for tests and
benchmarks.

* ``GET /v1/admin/faults`` -> ``{"config": {...}, "counters": {...}}``
* ``PUT /v1/admin/faults`` with the FaultConfig keys replaces the configuration (keys left out
  take their defaults, so ``{}`` turns every fault off) and answers like ``GET``. Each value may
  be a number or the text ``labric serve --faults`` takes (``{"bandwidth": "5M"}``,
  ``{"error": "0.1"}``), so the same settings work in both places.
* ``GET /v1/admin/stats`` -> the server's counters (see
  :meth:`labric.server.core.state.Stats.snapshot`) plus the injector's counters under
  ``"faults"`` (the per-file counters only name the caller's organisation's files);
  ``DELETE /v1/admin/stats`` zeroes them.
* ``GET /v1/admin/datasets/limits`` -> the dataset query and lock limits; ``PUT`` replaces them
  (keys left out take their defaults).

These routes are exempt from fault injection, so faults can always be turned off again. Faults and
counters are server-wide, so changing them (``PUT`` faults, ``DELETE`` stats) takes an admin key
of the server's own organisation (the one created on the data directory's first start); other
organisations' admin keys get 403.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import attrs
from aiohttp import web

from labric.server.admin import wire
from labric.server.core.auth import principal
from labric.server.core.declare import Body, Operation, Response, ref
from labric.server.core.faults import FaultConfig, FaultConfigError, parse_faults
from labric.server.core.http import HTTPError, invalid, json_response, read_json_object
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE, ServerState
from labric.server.datasets import DATASETS, DatasetLimits

__all__ = ["register"]


ROUTES = Routes(wire.ADMIN)


def _faults(state: ServerState) -> dict[str, Any]:
    return {
        "config": attrs.asdict(state.injector.config),
        "counters": dict(state.injector.counters),
    }


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/admin/faults",
        scope="admin",
        summary="The fault injection settings and counters",
        responses=(Response(schema=ref("Faults")),),
    )
)
async def get_faults(request: web.Request) -> web.StreamResponse:
    """``GET /v1/admin/faults``."""
    return json_response(_faults(request.app[STATE]))


def _require_operator(request: web.Request, what: str) -> None:
    """Refuse a server-wide change to admin keys of any organisation but the server's own."""
    operator = request.app[STATE].operator_org_id
    if operator is not None and principal(request).org_id != operator:
        raise HTTPError(
            403,
            f"{what} is server-wide: only admin keys of the server's own organisation (the one "
            "created when its data directory was first used) may change it",
        )


@ROUTES.route(
    Operation(
        method="PUT",
        path="/v1/admin/faults",
        scope="admin",
        summary="Replace the fault settings (keys left out take defaults: {} turns all off)",
        body=Body(schema=ref("FaultConfigRequest"), required=False),
        responses=(Response(schema=ref("Faults")),),
    )
)
async def put_faults(request: web.Request) -> web.StreamResponse:
    """``PUT /v1/admin/faults``: replace the fault configuration."""
    _require_operator(request, "Fault injection")
    state = request.app[STATE]
    body = await read_json_object(request, optional=True)
    try:
        config = FaultConfig.from_json(_from_text(body))
    except (TypeError, ValueError, KeyError) as exc:
        raise invalid(["body"], f"Invalid fault configuration: {exc}") from None
    state.injector.update(config)
    return json_response(_faults(state))


def _from_text(body: dict[str, Any]) -> dict[str, Any]:
    """The body with each text value read as ``--faults`` reads it (``"5M"`` -> 5000000)."""
    values = dict(body)
    for key, value in body.items():
        if isinstance(value, str) and key != "scope":
            # parse_faults reads one "key=value" just as the command line does (units included)
            # and refuses an unknown key or a malformed value with a message naming it.
            if "," in value:
                raise FaultConfigError(f"{key} must be one value, got {value!r}")
            values[key] = getattr(parse_faults(f"{key}={value}"), key)
    return values


def _own_files(conn: sqlite3.Connection, org_id: str, file_ids: list[str]) -> set[str]:
    rows = conn.execute(
        "SELECT id FROM files WHERE org_id = ? AND id IN (SELECT value FROM json_each(?))",
        (org_id, json.dumps(file_ids)),
    )
    return {row[0] for row in rows}


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/admin/stats",
        scope="admin",
        summary="The server's counters",
        responses=(Response(schema=ref("Stats")),),
    )
)
async def get_stats(request: web.Request) -> web.StreamResponse:
    """``GET /v1/admin/stats``: the counters, with per-file ones only for the caller's files."""
    state = request.app[STATE]
    snapshot = state.stats.snapshot()
    snapshot["faults"] = dict(state.injector.counters)
    # The counters are server-wide, but file ids are an organisation's own: an admin key of
    # one organisation must not learn another's (nor their sizes) from here.
    storage = snapshot["storage"]
    named = [*storage["bytes_received_by_file"], *storage["part_puts_by_file"]]
    own = await state.db.run(_own_files, principal(request).org_id, named) if named else set()
    for name in ("bytes_received_by_file", "part_puts_by_file"):
        storage[name] = {k: v for k, v in storage[name].items() if k in own}
    return json_response(snapshot)


@ROUTES.route(
    Operation(
        method="DELETE",
        path="/v1/admin/stats",
        scope="admin",
        summary="Zero the counters",
        responses=(Response(status=204, description="Zeroed"),),
    )
)
async def reset_stats(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/admin/stats``: zero the counters."""
    _require_operator(request, "The counters")
    request.app[STATE].stats.reset()
    return web.Response(status=204)


# -- dataset limits ------------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/admin/datasets/limits",
        scope="admin",
        summary="The query and lock limits",
        responses=(Response(schema=ref("DatasetLimits")),),
    )
)
async def get_limits(request: web.Request) -> web.StreamResponse:
    """``GET /v1/admin/datasets/limits``."""
    return json_response(attrs.asdict(request.app[DATASETS].limits))


@ROUTES.route(
    Operation(
        method="PUT",
        path="/v1/admin/datasets/limits",
        scope="admin",
        summary="Replace the limits (keys left out take their defaults)",
        body=Body(schema=ref("DatasetLimitsRequest"), required=False),
        responses=(Response(schema=ref("DatasetLimits")),),
    )
)
async def put_limits(request: web.Request) -> web.StreamResponse:
    """``PUT /v1/admin/datasets/limits``: replace the limits (keys left out take defaults)."""
    store = request.app[DATASETS]
    body = await read_json_object(request, optional=True)
    try:
        store.limits = DatasetLimits(**body)
    except (TypeError, ValueError) as exc:
        raise invalid(["body"], f"Invalid limits: {exc}") from None
    return json_response(attrs.asdict(store.limits))


def register(router: Router) -> None:
    """Add the admin routes."""
    router.add(ROUTES)

"""The dashboards API (local routes; the hosted platform does not document them yet).

==================================================  =====  ======================================
route                                               scope  what
==================================================  =====  ======================================
``GET    /v1/dashboards``                           read   newest first; ``limit``/``cursor``
``POST   /v1/dashboards``                           write  create (201)
``GET    /v1/dashboards/{id}``                      read   one dashboard with its widgets
``PATCH  /v1/dashboards/{id}``                      write  change the fields sent
``DELETE /v1/dashboards/{id}``                      write  delete (204)
``GET    /v1/dashboards/{id}/widgets/{wid}/data``   read   evaluate one widget
==================================================  =====  ======================================

What a widget may hold, and how it is evaluated, is described in
:mod:`labric.server.dashboards.store`.
``PATCH`` replaces ``widgets`` as a whole when it is sent (widgets keep the ids they are sent
with; those sent without one get a new id); ``null`` counts as not sent, and an empty
``description`` clears it. Another organisation's dashboards answer 404, as missing ones do.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from labric.server.core.auth import principal
from labric.server.core.declare import PAGE, Body, Operation, Response, array, path_param, ref
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE
from labric.server.dashboards import store, wire
from labric.server.datasets import DATASETS

__all__ = ["register"]

#: The largest dashboard body accepted (widgets carry SQL and markdown).
MAX_BODY = 2 * 1024 * 1024


ROUTES = Routes(wire.DASHBOARDS)


def _not_found(dashboard_id: str) -> HTTPError:
    return HTTPError(404, f"Dashboard {dashboard_id} not found")


def _max_rows(request: web.Request) -> int:
    return request.app[DATASETS].limits.max_query_rows


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/dashboards",
        scope="read",
        summary="Dashboards, newest first",
        params=PAGE,
        responses=(Response(schema=array(ref("Dashboard"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
    )
)
async def list_dashboards(request: web.Request) -> web.StreamResponse:
    """``GET /v1/dashboards``: the organisation's dashboards, newest first, a page at a time."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    wanted = listing(state, Fields(request.query, "query"))

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        rows = await state.db.run(
            lambda conn: store.dashboard_list(conn, org_id, after=after, limit=n)
        )
        return [((row.created_at, row.rowid), store.dashboard_json(row)) for row in rows]

    return await respond(request, wanted, fetch)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/dashboards",
        scope="write",
        summary="Create a dashboard",
        body=Body(schema=ref("CreateDashboardRequest"), limit=MAX_BODY),
        responses=(Response(status=201, description="Created", schema=ref("Dashboard")),),
    )
)
async def create_dashboard(request: web.Request) -> web.StreamResponse:
    """``POST /v1/dashboards``: a new dashboard."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    body = await read_json_object(request, limit=MAX_BODY)
    f = Fields(body)
    name = f.string("name", required=True, max_length=255)
    description = f.string("description", max_length=10_000)
    widgets = store.parse_widgets(f, f.array("widgets"), max_rows=_max_rows(request))
    f.check()
    assert name is not None
    now = state.now()
    row = await state.db.run(
        lambda conn: store.dashboard_insert(
            conn,
            org_id=org_id,
            name=name,
            description=description or None,
            widgets=widgets,
            now=now,
        )
    )
    return json_response(store.dashboard_json(row), status=201)


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/dashboards/{dashboard_id}",
        scope="read",
        summary="One dashboard with its widgets",
        params=(wire.DASHBOARD_ID,),
        responses=(Response(schema=ref("Dashboard")),),
        errors=wire.MISSING,
    )
)
async def get_dashboard(request: web.Request) -> web.StreamResponse:
    """``GET /v1/dashboards/{dashboard_id}``."""
    state = request.app[STATE]
    dashboard_id = request.match_info["dashboard_id"]
    org_id = principal(request).org_id
    row = await state.db.run(lambda conn: store.dashboard_get(conn, org_id, dashboard_id))
    if row is None:
        raise _not_found(dashboard_id)
    return json_response(store.dashboard_json(row))


@ROUTES.route(
    Operation(
        method="PATCH",
        path="/v1/dashboards/{dashboard_id}",
        scope="write",
        summary="Change the fields sent",
        params=(wire.DASHBOARD_ID,),
        body=Body(schema=ref("UpdateDashboardRequest"), limit=MAX_BODY),
        responses=(Response(schema=ref("Dashboard")),),
        errors=wire.MISSING,
    )
)
async def update_dashboard(request: web.Request) -> web.StreamResponse:
    """``PATCH /v1/dashboards/{dashboard_id}``: change the fields sent."""
    state = request.app[STATE]
    dashboard_id = request.match_info["dashboard_id"]
    org_id = principal(request).org_id
    body = await read_json_object(request, limit=MAX_BODY)
    f = Fields(body)
    name = f.string("name", max_length=255)
    if name is not None and not name.strip():
        f.add(["name"], "String should not be empty", "string_too_short")
    description = f.string("description", max_length=10_000)
    items = f.array("widgets")
    widgets = store.parse_widgets(f, items, max_rows=_max_rows(request))
    f.check()
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if description is not None:
        changes["description"] = description or None
    if items is not None:
        changes["widgets"] = widgets
    now = state.now()
    row = await state.db.run(
        lambda conn: store.dashboard_update(conn, org_id, dashboard_id, changes, now)
    )
    if row is None:
        raise _not_found(dashboard_id)
    return json_response(store.dashboard_json(row))


@ROUTES.route(
    Operation(
        method="DELETE",
        path="/v1/dashboards/{dashboard_id}",
        scope="write",
        summary="Delete a dashboard",
        params=(wire.DASHBOARD_ID,),
        responses=(Response(status=204, description="Deleted"),),
        errors=wire.MISSING,
    )
)
async def delete_dashboard(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/dashboards/{dashboard_id}``."""
    state = request.app[STATE]
    dashboard_id = request.match_info["dashboard_id"]
    org_id = principal(request).org_id
    if not await state.db.run(lambda conn: store.dashboard_delete(conn, org_id, dashboard_id)):
        raise _not_found(dashboard_id)
    return web.Response(status=204)


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/dashboards/{dashboard_id}/widgets/{widget_id}/data",
        scope="read",
        summary="Evaluate one widget",
        params=(wire.DASHBOARD_ID, path_param("widget_id", "The widget")),
        responses=(Response(schema=ref("WidgetData")),),
        errors={
            400: "The widget's source cannot be evaluated against the data as it is",
            404: "No such dashboard or widget",
        },
    )
)
async def widget_data(request: web.Request) -> web.StreamResponse:
    """``GET /v1/dashboards/{dashboard_id}/widgets/{widget_id}/data``: evaluate one widget."""
    state = request.app[STATE]
    dashboard_id = request.match_info["dashboard_id"]
    widget_id = request.match_info["widget_id"]
    org_id = principal(request).org_id
    row = await state.db.run(lambda conn: store.dashboard_get(conn, org_id, dashboard_id))
    if row is None:
        raise _not_found(dashboard_id)
    widget = next((w for w in row.widgets if w["id"] == widget_id), None)
    if widget is None:
        raise HTTPError(404, f"Dashboard {dashboard_id} has no widget {widget_id}")
    return json_response(await store.evaluate(request.app[DATASETS], org_id, widget))


def register(router: Router) -> None:
    """Add the dashboards routes."""
    router.add(ROUTES)

"""Routes are declared once: the router adds only declared routes, the served document is made of
exactly the routes the application serves, and requests are checked against the declarations."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from labric.server import LocalServer
from labric.server.core.app import add_routes
from labric.server.core.declare import LIMIT, Body, Family, Operation, Param, integer, obj, string
from labric.server.core.http import HTTPError, error_response, json_response, read_json_object
from labric.server.core.routing import (
    PAGE_ROUTES,
    ROUTE_ALIASES,
    ROUTE_DECLARATIONS,
    ROUTE_SCOPES,
    Handler,
    Pages,
    Router,
    Routes,
    unversioned,
)

from ._support import documented

# -- the application's router and the served document ------------------------------------------


def _template(route: web.AbstractRoute) -> str:
    assert route.resource is not None
    # aiohttp's canonical form keeps a parameter's regex out: {number}, not {number:...}
    return re.sub(r"{([^}:]+):[^}]*}", r"{\1}", route.resource.canonical)


def _served(app: web.Application) -> set[tuple[str, str]]:
    """Every route the application serves, less the unversioned aliases (checked apart) and
    the console's pages (no API routes; checked apart)."""
    aliases = app.get(ROUTE_ALIASES, {})
    pages = app.get(PAGE_ROUTES, set())
    return {
        (r.method, _template(r)) for r in app.router.routes() if r not in aliases and r not in pages
    }


async def test_every_served_route_has_an_entry_and_every_entry_a_route(
    server: LocalServer,
) -> None:
    app = server._runner.app  # type: ignore[union-attr]  # the router lives on the app
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.origin}/api/v1/openapi.json") as resp,
    ):
        assert resp.status == 200
        served_doc = await resp.json()
    served = _served(app)
    entries = set(documented(served_doc))
    assert len(served) > 50
    assert not sorted(served - entries), "served without an entry in the document"
    assert not sorted(entries - served), "in the document, but not served"


def test_every_route_of_the_application_comes_from_a_declaration() -> None:
    app = web.Application()
    add_routes(Router(app))
    declared = {(d.operation.method, d.operation.full_path) for d in app[ROUTE_DECLARATIONS]}
    assert declared == _served(app)


def test_pages_are_the_consoles_and_stay_out_of_the_api_and_its_document() -> None:
    """Pages are registered apart: none has a scope or a declaration, none is under ``/api`` or
    ``/storage``, and every route is either a page or a declared route."""
    app = web.Application()
    add_routes(Router(app))
    pages = app[PAGE_ROUTES]
    assert len(pages) > 10
    templates = {_template(r) for r in pages}
    assert all(t == "/" or t.startswith("/console/") for t in templates), sorted(templates)
    assert not any(r in app[ROUTE_SCOPES] for r in pages)
    declared = {d.operation.full_path for d in app[ROUTE_DECLARATIONS]}
    assert not templates & declared
    assert set(app.router.routes()) == set(app[ROUTE_SCOPES]) | pages


def test_the_router_refuses_a_page_under_the_api_or_storage() -> None:
    for path in ("/api/v1/files", "/api", "/storage/v1/x"):
        pages = Pages()
        pages.page("GET", path)(_nothing)
        with pytest.raises(ValueError, match="may not be served under /api or /storage"):
            Router(web.Application()).add_pages(pages)


def test_every_v1_route_has_exactly_its_unversioned_alias() -> None:
    """The aliases are accounted for explicitly: each repeats one declared ``/v1`` route, with
    its handler and scope, and each ``/v1`` API route has one (storage routes none)."""
    app = web.Application()
    add_routes(Router(app))
    by_path = {(r.method, _template(r)): r for r in app.router.routes()}
    aliases = app[ROUTE_ALIASES]
    expected = {
        (d.operation.method, alias): d.operation.full_path
        for d in app[ROUTE_DECLARATIONS]
        if not d.operation.storage and (alias := unversioned(d.operation.full_path))
    }
    assert len(expected) > 50
    assert {(r.method, _template(r)): target for r, target in aliases.items()} == expected
    for route, target in aliases.items():
        original = by_path[(route.method, target)]
        assert route.handler is original.handler, f"{route.method} {target}"
        assert app[ROUTE_SCOPES][route] == app[ROUTE_SCOPES][original]
    assert not any(_template(r).startswith("/api/v1") for r in aliases)
    assert not any(_template(r).startswith("/storage") for r in aliases)


async def _nothing(request: web.Request) -> web.StreamResponse:
    return web.Response()


def test_the_router_refuses_a_route_added_without_a_declaration() -> None:
    app = web.Application()
    router = Router(app)
    add_routes(router)
    app.router.add_route("GET", "/api/v1/sneaky", _nothing)
    with pytest.raises(RuntimeError, match="without a declaration: GET /api/v1/sneaky"):
        router.check_complete()


def test_the_router_refuses_contradictory_declarations() -> None:
    family = Family(tag="t", description="d")
    twice = Routes(family)
    op = Operation(method="GET", path="/v1/twice", scope="read", summary="s")
    twice.route(op)(_nothing)
    twice.route(op)(_nothing)
    with pytest.raises(ValueError, match="declared twice"):
        Router(web.Application()).add(twice)
    private_storage = Routes(family)
    private_storage.route(
        Operation(method="GET", path="/storage/x", scope="read", storage=True, summary="s")
    )(_nothing)
    with pytest.raises(ValueError, match="a storage route is public"):
        Router(web.Application()).add(private_storage)


# -- requests checked against the declarations -------------------------------------------------

_FAMILY = Family(tag="probe", description="Routes that check nothing themselves")
_PROBES = Routes(_FAMILY)


@_PROBES.route(
    Operation(
        method="GET",
        path="/v1/probe",
        scope="public",
        summary="Answers its query as received",
        params=(
            LIMIT,
            Param(name="size", where="query", schema=integer(minimum=0, maximum=10)),
            Param(name="colour", where="query", schema=string(enum=["red", "blue"])),
            Param(name="code", where="query", schema=string(maxLength=4, pattern="^[A-Z]+$")),
            Param(name="needed", where="query", required=True),
        ),
    )
)
async def _echo_query(request: web.Request) -> web.StreamResponse:
    return json_response(dict(request.query))


@_PROBES.route(
    Operation(
        method="POST",
        path="/v1/probe",
        scope="public",
        summary="Answers its body as received",
        body=Body(schema=obj({"n": integer()}), limit=64),
    )
)
async def _echo_body(request: web.Request) -> web.StreamResponse:
    return json_response(await read_json_object(request))


Call = Callable[..., Awaitable[tuple[int, Any]]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPError as exc:  # as the server's own error middleware answers it
        return error_response(exc.status, exc.detail)


@pytest.fixture
async def probe() -> AsyncIterator[Call]:
    app = web.Application(middlewares=[_errors])
    Router(app).add(_PROBES)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:

        async def call(method: str, query: str = "", body: bytes | None = None) -> tuple[int, Any]:
            url = f"http://127.0.0.1:{port}/api/v1/probe{query}"
            async with session.request(method, url, data=body) as resp:
                return resp.status, await resp.json()

        yield call
    await runner.cleanup()


async def test_declared_query_parameters_are_checked_before_the_handler(probe: Call) -> None:
    status, body = await probe("GET", "?needed=1&limit=2&size=10&colour=red&code=AB&other=x")
    assert (status, body["size"], body["other"]) == (200, "10", "x")  # undeclared: ignored
    status, body = await probe("GET", "?limit=0&size=11&colour=green&code=abcde")
    assert status == 422
    assert [(p["loc"], p["type"]) for p in body["detail"]] == [
        (["query", "limit"], "greater_than_equal"),
        (["query", "size"], "less_than_equal"),
        (["query", "colour"], "enum"),
        (["query", "code"], "string_too_long"),
        (["query", "needed"], "missing"),
    ]
    assert body["detail"][2]["msg"] == "Input should be 'red' or 'blue'"
    status, body = await probe("GET", "?needed=&size=x1&code=ab")
    assert status == 422
    assert [(p["loc"], p["type"]) for p in body["detail"]] == [
        (["query", "size"], "int_parsing"),
        (["query", "code"], "string_pattern_mismatch"),
    ]


async def test_a_declared_json_body_is_read_and_checked_before_the_handler(probe: Call) -> None:
    assert await probe("POST", body=b'{"n": 1}') == (200, {"n": 1})
    status, body = await probe("POST")
    assert (status, body["detail"][0]["type"]) == (422, "missing")
    status, body = await probe("POST", body=b"[1]")
    assert (status, body["detail"][0]["type"]) == (422, "dict_type")
    status, body = await probe("POST", body=b"{")
    assert status == 400
    assert "not valid JSON" in body["detail"]
    status, body = await probe("POST", body=b'{"n": "' + b"x" * 64 + b'"}')
    assert status == 413
    assert "64 bytes" in body["detail"]


async def test_the_servers_listings_check_their_query_against_the_declarations(
    server: LocalServer,
) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for path, query, loc, kind in [
            ("/v1/files", "limit=0", "limit", "greater_than_equal"),
            ("/v1/files", "limit=ten", "limit", "int_parsing"),
            ("/v1/jobs", "cursor=" + "c" * 1025, "cursor", "string_too_long"),
            ("/v1/job-executions", "status=paused", "status", "enum"),
            ("/v1/instruments", "instrument_id=x&limit=-1", "limit", "greater_than_equal"),
        ]:
            async with session.get(f"{server.origin}/api{path}?{query}") as resp:
                assert resp.status == 422, (path, query)
                detail = (await resp.json())["detail"]
            assert [(p["loc"], p["type"]) for p in detail] == [(["query", loc], kind)], path
        async with session.get(f"{server.origin}/api/v1/files?unheard_of=1") as resp:
            assert resp.status == 200

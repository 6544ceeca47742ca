"""The scope x route matrix: every registered route with no key, a bad key, and keys of each scope.

Routes come from the server's own registry (``ROUTE_SCOPES``, filled from the routes'
declarations), so a route added later is in the matrix without touching this file. Without a key
every API route answers 401; with a key of a weaker scope than the route's, 403 naming the
route's scope; with a key of exactly the route's scope, anything but 401 or 403 (and no 5xx).
Storage routes take no key at all: a key does not open them.

The registry is also the document's source, so a scope lowered in a declaration would pass both
of those; :func:`test_no_route_asks_less_than_its_kind_needs` holds the floor every route's scope
must meet, in this file's own words (reads ``read``, writes ``write``, ``/v1/admin/`` ``admin``),
with the few deliberate exceptions named.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from labric.server import LocalServer
from labric.server.core.auth import SCOPES
from labric.server.core.routing import PAGE_ROUTES, PUBLIC, ROUTE_SCOPES

from ._support import Route, api_routes, keyed_routes, routes

#: A key of each scope, and none.
KEYS = (None, *SCOPES)
#: Scope -> the scopes that hold it (they nest: admin > write > read).
HOLDERS = {scope: set(SCOPES[i:]) for i, scope in enumerate(SCOPES)}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _call(
    session: aiohttp.ClientSession,
    server: LocalServer,
    route: Route,
    headers: dict[str, str],
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    # Numeric parameters (a part number) get a number, or the route would not even match.
    path = route.path(**{name: "1" for name in route.params if name == "number"})
    url = server.origin + ("/api" + path if route.is_api else path)
    body = b"{}" if route.method in ("POST", "PUT", "PATCH") else None
    async with session.request(
        route.method,
        url,
        data=body,
        headers={"Content-Type": "application/json", **headers},
        allow_redirects=False,
    ) as resp:
        raw = await resp.read()
        detail = None
        if raw and resp.content_type == "application/json":
            data = await resp.json()
            detail = data.get("detail") if isinstance(data, dict) else None
        return resp.status, detail, resp.headers


def test_every_route_declares_a_known_scope(server: LocalServer) -> None:
    """No route reaches the app without going through the registry (and so without a scope)."""
    app: web.Application = server._runner.app  # type: ignore[union-attr]
    registered = app[ROUTE_SCOPES]
    pages = app[PAGE_ROUTES]  # the console's HTML pages: a session cookie, never a key
    for route in app.router.routes():
        if route in pages:
            assert route.resource is not None
            assert not route.resource.canonical.startswith(("/api", "/storage")), route
            continue
        assert route in registered, f"{route.method} {route.resource} has no declared scope"
    assert set(registered.values()) <= {*SCOPES, PUBLIC}
    assert keyed_routes(server), "the registry is empty"


#: Routes whose scope is below what their method says, on purpose: reads sent as POST (a query
#: in the body; an agent run, whose data-changing tools a key without write is refused in the
#: stream; a prediction, which saves nothing), and the public routes (the API document; a device
#: exchanging its pairing code).
_BELOW_THEIR_KIND = {
    ("POST", "/api/v1/tools/read"): "read",
    ("POST", "/api/v1/tools/query"): "read",
    ("POST", "/api/v1/agent/runs"): "read",
    ("POST", "/api/v1/ml-models/predict"): "read",  # hosted: predictions need read; nothing saved
    ("POST", "/api/v1/instruments/pair"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
}


def _floor(route: Route) -> str:
    """The least scope a route of this kind may ask for."""
    # An unversioned alias is held to the floor of the route it repeats.
    if route.versioned.startswith("/api/v1/admin/"):
        return "admin"
    if (route.method, route.versioned) in _BELOW_THEIR_KIND:
        return _BELOW_THEIR_KIND[(route.method, route.versioned)]
    return "read" if route.method in ("GET", "HEAD") else "write"


def test_no_route_asks_less_than_its_kind_needs(server: LocalServer) -> None:
    rank = {PUBLIC: -1, **{scope: i for i, scope in enumerate(SCOPES)}}
    too_low = [
        f"{route}: registered {route.scope}, needs at least {_floor(route)}"
        for route in api_routes(server)
        if rank[route.scope] < rank[_floor(route)]
    ]
    assert not too_low, too_low


@pytest.fixture
def scoped_keys(server: LocalServer) -> dict[str, str]:
    """A key of each single scope (a ``write`` key also reads: scopes nest)."""
    return {scope: server.create_key([scope]) for scope in SCOPES}


async def test_a_key_of_a_weaker_scope_gets_403_naming_the_routes_scope(
    server: LocalServer, session: aiohttp.ClientSession, scoped_keys: dict[str, str]
) -> None:
    checked = 0
    for route in keyed_routes(server):
        for scope in SCOPES[: SCOPES.index(route.scope)]:
            headers = {"Authorization": f"Bearer {scoped_keys[scope]}"}
            status, detail, _ = await _call(session, server, route, headers)
            assert status == 403, (str(route), scope, status, detail)
            assert f"lacks the '{route.scope}' scope" in str(detail), (str(route), detail)
            checked += 1
    assert checked > 20  # every write and admin route, with each weaker key


async def test_a_key_of_exactly_the_routes_scope_gets_past_authorisation(
    server: LocalServer, session: aiohttp.ClientSession, scoped_keys: dict[str, str]
) -> None:
    for route in keyed_routes(server):
        headers = {"Authorization": f"Bearer {scoped_keys[route.scope]}"}
        status, detail, _ = await _call(session, server, route, headers)
        assert status not in (401, 403), (str(route), route.scope, status, detail)
        assert status < 500, (str(route), route.scope, status, detail)


async def test_public_api_routes_take_no_key_and_give_nothing_for_nothing(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    """Routes open without a key (the API document; a device exchanging its pairing code) never
    ask for one, and a write that proves nothing (an empty body) is a 4xx: no key handed out."""
    public = [r for r in api_routes(server) if not r.needs_key]
    for route in public:
        for headers in ({}, {"Authorization": f"Bearer {server.admin_key}"}):
            status, detail, _ = await _call(session, server, route, headers)
            assert status < 500, (str(route), status, detail)
            assert status != 401, f"the public route {route} asked for a key"
            if route.method in ("POST", "PUT", "PATCH", "DELETE"):
                assert 400 <= status < 500, (str(route), status, detail)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer lbk_abcd1234_" + "x" * 40,  # well-formed, unknown
        "Bearer " + "lbk_" * 500,
        "Basic YWRtaW46YWRtaW4=",
        "Bearer lbk_\u00e9\u00e9_secret",
        "bearer",
    ],
)
async def test_bad_keys_are_401_on_every_route(
    server: LocalServer, session: aiohttp.ClientSession, header: str
) -> None:
    for route in keyed_routes(server):
        status, detail, _ = await _call(
            session, server, route, {"Authorization": header.encode().decode("latin-1")}
        )
        assert status == 401, (str(route), status, detail)


async def test_a_revoked_admin_key_opens_nothing(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    key = server.create_key("admin")
    assert server.revoke_key(key)
    for route in keyed_routes(server):
        status, detail, _ = await _call(session, server, route, {"Authorization": f"Bearer {key}"})
        assert status == 401, (str(route), status, detail)


async def test_storage_routes_ignore_api_keys(
    server: LocalServer, session: aiohttp.ClientSession
) -> None:
    """A storage URL's signature is its whole authorisation: an admin key without one is 403."""
    storage = [r for r in routes(server) if not r.is_api]
    assert all(not r.needs_key for r in storage)
    assert storage
    for route in storage:
        for headers in ({}, {"Authorization": f"Bearer {server.admin_key}"}):
            status, detail, _ = await _call(session, server, route, headers)
            assert status == 403, (str(route), headers.keys(), status, detail)

"""Route registration: every route is added from its declaration, and only so.

A route module declares each route once, next to its handler, and hands the lot to the router::

    ROUTES = Routes(FILES)                      # the family: tag and component schemas


    @ROUTES.route(Operation(method="GET", path="/v1/files", scope="read", summary="..."))
    async def list_files(request: web.Request) -> web.StreamResponse: ...


    def register(router: Router) -> None:
        router.add(ROUTES)

:class:`Router` is the only way routes are added: it adds each declared handler (wrapped in the
checks of :mod:`labric.server.core.validation`) at its declaration's method and path, records its
scope where the authentication middleware finds it (:data:`ROUTE_SCOPES`) and its declaration
where the OpenAPI document is assembled from (:data:`ROUTE_DECLARATIONS`).
:meth:`Router.check_complete` refuses an application holding a route that was added some other
way. API paths are declared without the ``/api`` prefix (``/v1/files``), exactly as the hosted API
documents them; storage routes live outside ``/api`` and are public (their signed URL is the
authorisation).

Unversioned aliases
    The platform's introduction writes its paths without the version (``/api/files``), the
    official client with it (``/api/v1/files``). Every ``/v1/...`` declaration is therefore
    served at both paths: the router adds the alias (``/api/files``) with the very same checked
    handler and scope, so authentication, validation and limits cannot differ. An alias is no
    declaration of its own: :data:`ROUTE_ALIASES` maps each alias route to the served path of the
    route it repeats, and the OpenAPI document lists the ``/v1`` paths only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import attrs
from aiohttp import web
from aiohttp.abc import AbstractView

from labric.server.core.declare import API_PREFIX, PUBLIC, Family, Operation
from labric.server.core.validation import checked

__all__ = [
    "API_PREFIX",
    "PAGE_ROUTES",
    "PUBLIC",
    "ROUTE_ALIASES",
    "ROUTE_DECLARATIONS",
    "ROUTE_SCOPES",
    "VERSION_PREFIX",
    "Declared",
    "Handler",
    "Pages",
    "Router",
    "Routes",
    "unversioned",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


@attrs.frozen
class Declared:
    """A registered route's declaration and the family it belongs to."""

    operation: Operation
    family: Family


#: Route -> the scope it needs (``read``, ``write``, ``admin``) or :data:`PUBLIC`.
ROUTE_SCOPES: web.AppKey[dict[web.AbstractRoute, str]] = web.AppKey("labric_route_scopes")
#: The declarations of every registered route, in registration order.
ROUTE_DECLARATIONS: web.AppKey[list[Declared]] = web.AppKey("labric_route_declarations")
#: Alias route (``/api/files``) -> the served path it repeats (``/api/v1/files``).
ROUTE_ALIASES: web.AppKey[dict[web.AbstractRoute, str]] = web.AppKey("labric_route_aliases")

#: The console's page routes (no scope, no declaration: see "Pages" above).
PAGE_ROUTES: web.AppKey[set[web.AbstractRoute]] = web.AppKey("labric_page_routes")

#: The version segment the hosted API's paths start with; also served without it.
VERSION_PREFIX = "/v1"


def unversioned(full_path: str) -> str | None:
    """The alias of an API path (``/api/v1/files`` -> ``/api/files``), or ``None`` if it has
    none (a storage path, an API path outside ``/v1``)."""
    versioned = API_PREFIX + VERSION_PREFIX + "/"
    if not full_path.startswith(versioned):
        return None
    return API_PREFIX + "/" + full_path[len(versioned) :]


class Routes:
    """The routes one module declares, each with its handler.

    Args:
        family: The family (tag and component schemas) the routes belong to.
    """

    def __init__(self, family: Family) -> None:
        self.family = family
        self._declared: list[tuple[Operation, Handler]] = []

    def route(self, operation: Operation) -> Callable[[H], H]:
        """Declare the decorated handler's route (stack several for one handler)."""

        def declare(handler: H) -> H:
            self._declared.append((operation, handler))
            return handler

        return declare

    def __iter__(self) -> Iterator[tuple[Operation, Handler]]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)


class Pages:
    """HTML pages one module serves (see "Pages" in the module docstring)."""

    def __init__(self) -> None:
        self._pages: list[tuple[str, str, Handler]] = []

    def page(self, method: str, path: str) -> Callable[[H], H]:
        """Serve the decorated handler at ``method`` ``path`` (stack several for one handler)."""

        def add(handler: H) -> H:
            self._pages.append((method, path, handler))
            return handler

        return add

    def __iter__(self) -> Iterator[tuple[str, str, Handler]]:
        return iter(self._pages)

    def __len__(self) -> int:
        return len(self._pages)


#: Where pages may not be served: the API's and storage's paths.
_NOT_PAGES = (API_PREFIX, "/storage")


class Router:
    """Adds declared routes to an application, recording their scopes and declarations.

    Args:
        app: The application being built.
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        app.setdefault(ROUTE_SCOPES, {})
        app.setdefault(ROUTE_DECLARATIONS, [])
        app.setdefault(ROUTE_ALIASES, {})
        app.setdefault(PAGE_ROUTES, set())
        self._scopes = app[ROUTE_SCOPES]
        self._declared = app[ROUTE_DECLARATIONS]
        self._aliases = app[ROUTE_ALIASES]
        self._pages = app[PAGE_ROUTES]

    @property
    def app(self) -> web.Application:
        """The application being built."""
        return self._app

    def add(self, routes: Routes) -> None:
        """Add every route ``routes`` declares.

        Raises:
            ValueError: A route is declared twice, or its declaration contradicts itself (a
                storage route that is not public, an API path under ``/api``).
        """
        for operation, handler in routes:
            self._add(operation, handler, routes.family)

    def _add(self, op: Operation, handler: Handler, family: Family) -> None:
        if op.storage and op.scope != PUBLIC:
            raise ValueError(f"{op.method} {op.path}: a storage route is public")
        if not op.storage and op.path.startswith(API_PREFIX + "/"):
            raise ValueError(f"{op.method} {op.path}: declare API paths without {API_PREFIX}")
        taken = {(d.operation.method, d.operation.full_path) for d in self._declared}
        if (op.method, op.full_path) in taken:
            raise ValueError(f"{op.method} {op.full_path} is declared twice")
        view: Handler | type[AbstractView] = checked(op, handler)
        route = self._app.router.add_route(op.method, op.pattern, view)
        self._scopes[route] = op.scope
        self._declared.append(Declared(op, family))
        alias = None if op.storage else unversioned(op.pattern)
        if alias is not None:
            aliased = self._app.router.add_route(op.method, alias, view)
            self._scopes[aliased] = op.scope
            self._aliases[aliased] = op.full_path

    def add_pages(self, pages: Pages) -> None:
        """Add HTML pages: served as they are, with no API key and no declaration.

        Raises:
            ValueError: A page is under ``/api`` or ``/storage`` (those are the API's).
        """
        for method, path, handler in pages:
            if any(path == p or path.startswith(p + "/") for p in _NOT_PAGES):
                raise ValueError(
                    f"{method} {path}: a page may not be served under /api or /storage"
                )
            self._pages.add(self._app.router.add_route(method, path, handler))

    def check_complete(self) -> None:
        """Refuse an application with a route that was not added from a declaration.

        Raises:
            RuntimeError: Naming the undeclared routes.
        """
        undeclared = [
            f"{route.method} {route.resource.canonical if route.resource else '?'}"
            for route in self._app.router.routes()
            if route not in self._scopes and route not in self._pages
        ]
        if undeclared:
            raise RuntimeError(f"Routes added without a declaration: {', '.join(undeclared)}")

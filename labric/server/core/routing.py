"""Route registration: every API route declares the scope it needs when it is added.

Route modules expose ``register(router)`` and add their handlers through :class:`Router`, which
records each route's scope where the authentication middleware finds it. API paths are given
without the ``/api`` prefix (``/v1/files``), exactly as the hosted API documents them; storage
routes live outside ``/api`` and are public (their signed URL is the authorisation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractView

__all__ = ["API_PREFIX", "PUBLIC", "ROUTE_SCOPES", "Handler", "Router"]

API_PREFIX = "/api"
#: The scope recorded for routes that take no API key (signed storage URLs).
PUBLIC = "public"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Route -> the scope it needs (``read``, ``write``, ``admin``) or :data:`PUBLIC`.
ROUTE_SCOPES: web.AppKey[dict[web.AbstractRoute, str]] = web.AppKey("labric_route_scopes")


class Router:
    """Adds routes to an application together with their scopes.

    Args:
        app: The application being built.
    """

    def __init__(self, app: web.Application) -> None:
        self._app = app
        if ROUTE_SCOPES not in app:
            app[ROUTE_SCOPES] = {}
        self._scopes = app[ROUTE_SCOPES]

    def api(self, method: str, path: str, handler: Handler, *, scope: str) -> None:
        """Add an API route (``path`` without ``/api``) needing ``scope``."""
        self._add(method, API_PREFIX + path, handler, scope)

    def storage(self, method: str, path: str, handler: Handler) -> None:
        """Add a public storage route (authorised by its URL signature)."""
        self._add(method, path, handler, PUBLIC)

    def _add(self, method: str, path: str, handler: Handler, scope: str) -> None:
        view: Handler | type[AbstractView] = handler
        route = self._app.router.add_route(method, path, view)
        self._scopes[route] = scope

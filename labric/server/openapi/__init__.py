"""The local API's OpenAPI 3.1 document (see :mod:`.assemble` for how it is built).

``GET /api/v1/openapi.json`` serves the document of the running application's routes;
:func:`document` builds the same document without a server, from the routes
:func:`labric.server.core.app.add_routes` registers.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from aiohttp import web

from labric.server.core.routing import ROUTE_DECLARATIONS, Declared, Router
from labric.server.openapi.assemble import OPENAPI_PATH, build_document

__all__ = ["OPENAPI_PATH", "build_document", "document"]


@functools.cache
def _document() -> dict[str, Any]:
    # Imported here: the application imports this package's document route, so importing it at
    # module level would make the package wait for the application it is part of.
    from labric.server.core.app import add_routes

    app = web.Application()
    add_routes(Router(app))
    declared: list[Declared] = app[ROUTE_DECLARATIONS]
    return build_document(declared)


def document() -> dict[str, Any]:
    """The local API's OpenAPI 3.1 document (a fresh copy)."""
    return copy.deepcopy(_document())

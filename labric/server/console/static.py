"""The console's scripts, style sheet and chart library, served from the package.

Only the files listed in :data:`ASSETS` are served (no path from the request reaches the file
system), with their media types and ``nosniff``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from aiohttp import web

from labric.server.console.layout import STATIC
from labric.server.console.session import security_headers
from labric.server.core.routing import Pages

__all__ = ["ASSETS", "PAGES"]

PAGES = Pages()

_ROOT = Path(__file__).parent / "static"
#: Served name -> media type.
ASSETS = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "vendor/chart.umd.min.js": "text/javascript",
    "vendor/chart.js-LICENSE.md": "text/plain",
}


@functools.cache
def _read(name: str) -> bytes:
    """An asset's bytes (read once: they are part of the installed package)."""
    return (_ROOT / name).read_bytes()


@PAGES.page("GET", STATIC + "/{name:.+}")
async def asset(request: web.Request) -> web.StreamResponse:
    """One of :data:`ASSETS`."""
    name = request.match_info["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        response = web.Response(status=404, text="Not found", content_type="text/plain")
        return security_headers(response)
    body = _read(name)
    response = web.Response(body=body, content_type=media_type, charset="utf-8")
    response.headers["Cache-Control"] = "private, max-age=300"
    return security_headers(response)

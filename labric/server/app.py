"""The aiohttp application: middlewares, in order, and the route modules.

Middlewares, outermost first::

    outer        X-Request-ID, per-route counters, and the last line of defence: any exception
                 becomes a JSON error ({"detail": ...}); unexpected ones are logged as 500s
    faults       the fault injector's middleware (500/503/429, latency, resets); it exempts the
                 admin routes itself, so a test can always turn faults off again
    auth         resolves ``Authorization: Bearer`` to a Principal and enforces the route's scope
                 (401 / 403); storage routes are public, unknown routes fall through to 404
    idempotency  replays the first response to a repeated Idempotency-Key (see idempotency.py)
    errors       turns HTTPError and aiohttp's HTTP exceptions into JSON responses, so that the
                 idempotency layer sees (and can store) 4xx answers as ordinary responses

Every response carries ``X-Request-ID`` (set when the response is prepared, so streamed and
fault-injected responses get it too). Unknown routes answer 404 and wrong methods 405, both as
JSON.
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from labric.server import auth, idempotency
from labric.server._http import HTTPError, error_response
from labric.server.faults import InjectedReset
from labric.server.routes import admin, executions, files, storage
from labric.server.routing import PUBLIC, ROUTE_SCOPES, Handler, Router
from labric.server.state import STATE, ServerState

__all__ = ["REQUEST_ID", "build_app"]

logger = logging.getLogger("labric.server")

REQUEST_ID = web.RequestKey("labric_request_id", str)

#: Bytes the server reads from a socket per buffer (larger buffers speed up uploads).
READ_BUFSIZE = 1024 * 1024


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return f"{request.method} (no route)"
    return f"{request.method} {resource.canonical}"


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {}
    if "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    if exc.status == 404:
        detail = f"Not found: no route for {request.method} {request.path}"
    elif exc.status == 405:
        detail = f"Method {request.method} is not allowed on {request.path}"
    elif exc.status == 413:
        detail = "Request body is too large for this route"
    else:
        detail = exc.reason
    response = error_response(exc.status, detail, headers=headers)
    if exc.status >= 400 and request.can_read_body:
        response.force_close()
    return response


def _from_http_error(exc: HTTPError) -> web.Response:
    response = error_response(exc.status, exc.detail, headers=exc.headers)
    if exc.close:
        response.force_close()
    return response


@web.middleware
async def _outer(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    request[REQUEST_ID] = f"req_{uuid.uuid4().hex}"
    state.stats.request(_route_name(request))
    try:
        response = await handler(request)
    except InjectedReset:
        state.stats.status(0)
        raise  # the connection is already reset; aiohttp drops this quietly
    except HTTPError as exc:
        response = _from_http_error(exc)
    except web.HTTPException as exc:
        response = _from_http_exception(request, exc)
    except Exception as exc:
        if request.transport is None or request.transport.is_closing():
            # The client went away mid-request: there is nobody to answer or to log for.
            state.stats.status(0)
            return error_response(400, f"Connection lost: {type(exc).__name__}")
        logger.exception("Unhandled error serving %s %s", request.method, request.path)
        response = error_response(500, f"Internal server error (request id {request[REQUEST_ID]})")
    state.stats.status(response.status)
    return response


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = request.app[ROUTE_SCOPES].get(request.match_info.route)
    if scope is None or scope == PUBLIC:
        return await handler(request)
    state = request.app[STATE]
    principal = await state.db.run(
        auth.authenticate, request.headers.get("Authorization"), state.clock()
    )
    if not principal.allows(scope):
        raise HTTPError(
            403,
            f"This API key lacks the '{scope}' scope needed for {request.method} {request.path}",
        )
    request[auth.PRINCIPAL] = principal
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPError as exc:
        return _from_http_error(exc)
    except InjectedReset:
        raise
    except web.HTTPException as exc:
        return _from_http_exception(request, exc)


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Request-ID"] = request.get(REQUEST_ID) or f"req_{uuid.uuid4().hex}"


def build_app(state: ServerState) -> web.Application:
    """Build the application serving the API and storage routes of one server."""
    app = web.Application(
        middlewares=[_outer, state.injector.middleware, _auth, idempotency.middleware, _errors],
        handler_args={"read_bufsize": READ_BUFSIZE},
    )
    app[STATE] = state
    app.on_response_prepare.append(_add_request_id)
    router = Router(app)
    for module in (files, storage, executions, admin):
        module.register(router)
    return app

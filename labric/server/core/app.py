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

Slow and idle clients
    aiohttp closes a connection that sits idle for ``idle_timeout`` seconds (its keep-alive
    timer). That timer starts when the connection opens or its last response is sent, and
    bytes arriving do not push it back, so it is also the deadline for a request's *headers*: a
    client that trickles a request line and headers (slowloris) is cut off when it expires.
    aiohttp has no timeout for a request *body* that stops arriving, so :class:`_BodyWatchdog`
    adds one: while a body is incomplete and the server is willing to read (its transport is not
    paused by flow control because a handler is busy), ``body_timeout`` seconds in which less
    than 1 KiB of it arrives close the connection. A client that stops *reading* a download is
    cut off the same way (see :mod:`labric.server.files.storage`). Aiohttp's default line,
    header-field and header-count limits answer oversized headers with a 400 before any handler
    runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets

from aiohttp import web

from labric.server import console, datasets
from labric.server.admin import routes as admin
from labric.server.agent import routes as agent
from labric.server.core import auth, idempotency
from labric.server.core.faults import InjectedReset
from labric.server.core.http import DEFAULT_JSON_LIMIT, HTTPError, error_response
from labric.server.core.routing import (
    API_PREFIX,
    PUBLIC,
    ROUTE_ALIASES,
    ROUTE_SCOPES,
    Handler,
    Router,
)
from labric.server.core.state import SEND_TIMEOUT, STATE, ServerState
from labric.server.dashboards import routes as dashboards
from labric.server.datasets.validate import MAX_BODY_BYTES as MAX_WRITE_BODY
from labric.server.experiments import routes as experiments
from labric.server.files import routes as files
from labric.server.files import signed, storage
from labric.server.images import routes as images
from labric.server.images.wire import MAX_BODY as MAX_ANNOTATE_BODY
from labric.server.instruments import routes as instruments
from labric.server.jobs import executions
from labric.server.jobs import routes as jobs
from labric.server.ml_models import routes as ml_models
from labric.server.ml_models.wire import MAX_PREDICT_BODY
from labric.server.notifications import routes as notifications
from labric.server.openapi import assemble as openapi

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "REQUEST_ID",
    "add_routes",
    "build_app",
]

logger = logging.getLogger("labric.server")

REQUEST_ID = web.RequestKey("labric_request_id", str)
# Request ids: 32 hex digits, a random half per process and a counter (no system call each),
# scrambled by an odd multiplier (a bijection modulo 2**64, so still unique) so that ids do
# not run to long strings of zeros.
_REQUEST_ID_PREFIX = f"req_{secrets.token_hex(8)}"
_REQUEST_ID_MIX = secrets.randbits(64) | 1
_request_numbers = itertools.count(secrets.randbits(64))


def _request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers) * _REQUEST_ID_MIX % 2**64:016x}"


#: Bytes the server reads from a socket per buffer (larger buffers speed up uploads).
READ_BUFSIZE = 1024 * 1024
#: Seconds an idle keep-alive connection is kept, and the deadline for a request's headers.
DEFAULT_IDLE_TIMEOUT = 75.0
#: Seconds a request body may stay silent before its connection is closed.
DEFAULT_BODY_TIMEOUT = 60.0
_BODY_TIMEOUT = web.AppKey("labric_body_timeout", float)


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    if route.resource is None:
        return f"{request.method} (no route)"
    # An unversioned alias counts as the route it repeats.
    path = request.app[ROUTE_ALIASES].get(route) or route.resource.canonical
    return f"{request.method} {path}"


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


#: Bytes a request body must send per ``body_timeout`` to count as arriving.
_BODY_PROGRESS = 1024


class _BodyWatchdog:
    """Closes the connection of a request whose body stops arriving for ``timeout`` seconds.

    Checked four times per timeout on a timer (no task): the body counts as stalled when less
    than :data:`_BODY_PROGRESS` bytes (or what remains of it) arrived since the last progress
    although the transport was reading, so a client that trickles a byte now and then cannot
    hold its connection for ever either. While flow control has paused reading (the handler is
    not keeping up), the clock restarts: that wait is ours.
    """

    def __init__(self, request: web.Request, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._seen = request.content.total_bytes
        self._since = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(timeout / 4, self._check)

    def _check(self) -> None:
        self._handle = None
        content, transport = self._request.content, self._request.transport
        if content.is_eof() or transport is None or transport.is_closing():
            return
        now = self._loop.time()
        needed = _BODY_PROGRESS
        if self._request.content_length is not None:
            needed = max(1, min(needed, self._request.content_length - self._seen))
        if content.total_bytes - self._seen >= needed or not transport.is_reading():
            self._seen, self._since = content.total_bytes, now
        elif now - self._since >= self._timeout:
            logger.info(
                "Closing %s %s: its body sent next to nothing for %.3g s",
                self._request.method,
                self._request.path,
                self._timeout,
            )
            transport.close()
            return
        self._handle = self._loop.call_later(self._timeout / 4, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


#: Methods whose routes take no body: one declared over the JSON limit is refused.
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
#: The most any API route accepts (see :func:`_largest_body`).
_LARGEST_BODY = web.AppKey("labric_largest_body", int)


def _largest_body(state: ServerState) -> int:
    """The largest body any API route takes; a route with a larger limit must be named here."""
    return max(
        DEFAULT_JSON_LIMIT,
        dashboards.MAX_BODY,
        MAX_WRITE_BODY,
        MAX_PREDICT_BODY,
        MAX_ANNOTATE_BODY,
        state.settings.max_multipart_body,
    )


def _refuse_unwanted_body(request: web.Request) -> None:
    """Refuse a declared body no route would take, before any handler runs and without reading
    a byte of it: over the JSON limit for a method that takes none, far over the largest API
    limit for any API request (handlers apply their own limits below that). Routes that take no
    body would otherwise run with one of any size declared, and leave it to be drained.

    Raises:
        HTTPError: 413 naming the limit (the connection is closed after it).
    """
    declared = request.content_length
    if declared is None:
        return
    if request.method in _BODYLESS:
        limit, refused_over, where = DEFAULT_JSON_LIMIT, DEFAULT_JSON_LIMIT, "this route"
    elif request.path.startswith(API_PREFIX + "/"):
        # Twice the largest: up to there, a route's own limit and wording apply (data/write
        # answers in the hosted API's words).
        limit, where = request.app[_LARGEST_BODY], "any route"
        refused_over = 2 * limit
    else:
        return  # storage uploads have their own limits (the signed length range, the PUT cap)
    if declared > refused_over:
        raise HTTPError(
            413, f"Request body is over the limit of {limit} bytes for {where}", close=True
        )


@web.middleware
async def _outer(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    request[REQUEST_ID] = _request_id()
    state.stats.request(_route_name(request))
    watchdog = None
    if request.body_exists and not request.content.is_eof():
        watchdog = _BodyWatchdog(request, request.app[_BODY_TIMEOUT])
    try:
        _refuse_unwanted_body(request)
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
    finally:
        if watchdog is not None:
            watchdog.cancel()
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
    response.headers["X-Request-ID"] = request.get(REQUEST_ID) or _request_id()


def build_app(
    state: ServerState,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> web.Application:
    """Build the application serving the API and storage routes of one server.

    Args:
        state: What the handlers share.
        idle_timeout: Seconds before an idle connection is closed; also the deadline for a
            request's headers (see the module docstring).
        body_timeout: Seconds a request body may send nothing before its connection is closed;
            also how long a download may wait for its client to take more bytes.
    """
    if not (idle_timeout > 0 and body_timeout > 0):
        raise ValueError("idle_timeout and body_timeout must be positive")
    app = web.Application(
        middlewares=[_outer, state.injector.middleware, _auth, idempotency.middleware, _errors],
        handler_args={"read_bufsize": READ_BUFSIZE, "keepalive_timeout": idle_timeout},
    )
    app[STATE] = state
    app[_BODY_TIMEOUT] = body_timeout
    app[SEND_TIMEOUT] = body_timeout
    app[_LARGEST_BODY] = _largest_body(state)
    app[idempotency.BODY_LIMIT] = 2 * app[_LARGEST_BODY]  # as _refuse_unwanted_body
    app.on_response_prepare.append(_add_request_id)
    datasets.install(app, state)
    ml_models.install(app, state)
    add_routes(Router(app))
    return app


def add_routes(router: Router) -> None:
    """Add every route the server serves, each from its declaration (the document's last), and
    the console's pages.

    Raises:
        RuntimeError: A route was added without a declaration.
    """
    for module in (
        signed,
        files,
        storage,
        executions,
        jobs,
        datasets,
        instruments,
        experiments,
        dashboards,
        notifications,
        agent,
        ml_models,
        images,
        admin,
        openapi,
        console,
    ):
        module.register(router)
    router.check_complete()

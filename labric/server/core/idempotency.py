"""``Idempotency-Key``: a repeated write gets the first answer again instead of running twice.

For ``POST``, ``PATCH`` and ``PUT`` on API routes carrying an ``Idempotency-Key`` header, the
first complete response with a 2xx or 4xx status is stored under (API key, idempotency key,
method, path) and replayed for every later request with the same four values, marked with
``Idempotent-Replayed: true``. Answers that invite a retry are not stored, so the retry really
runs: 5xx, and the "try again" 4xx statuses (408, 409, 425, 429). Stored answers are kept for
24 hours and survive a restart.

Concurrency: requests sharing the four values are serialised by an in-process lock, so two
concurrent duplicates never both execute; the second waits for the first and replays its answer.
"""

from __future__ import annotations

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import PRINCIPAL
from labric.server.core.http import HTTPError
from labric.server.core.routing import API_PREFIX, Handler
from labric.server.core.state import STATE

__all__ = ["HEADER", "REPLAYED_HEADER", "RETENTION_SECONDS", "middleware"]

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
RETENTION_SECONDS = 24 * 60 * 60
_METHODS = frozenset({"POST", "PATCH", "PUT"})
_KEPT_HEADERS = ("Content-Type", "Link", "Location", "Retry-After")
_NOT_STORED = frozenset({408, 409, 425, 429})


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Replay stored answers and store first answers; see the module docstring."""
    idem_key = request.headers.get(HEADER)
    principal = request.get(PRINCIPAL)
    if (
        idem_key is None
        or principal is None
        or request.method not in _METHODS
        or not request.path.startswith(API_PREFIX + "/")
    ):
        return await handler(request)
    if not idem_key or len(idem_key) > 255:
        raise HTTPError(400, f"{HEADER} must be 1 to 255 characters")
    state = request.app[STATE]
    ident = (principal.key_id, idem_key, request.method, request.path)
    async with state.idempotency_locks.hold(ident):
        stored = await state.db.run(records.idem_get, *ident)
        if stored is not None:
            headers = dict(stored.headers)
            headers[REPLAYED_HEADER] = "true"
            replay = web.Response(body=stored.body, status=stored.status, headers=headers)
            if request.can_read_body:
                replay.force_close()  # the repeated body was not read
            return replay
        response = await handler(request)
        if (
            isinstance(response, web.Response)
            and response.status < 500
            and response.status not in _NOT_STORED
            and isinstance(response.body, bytes)
        ):
            kept = {h: response.headers[h] for h in _KEPT_HEADERS if h in response.headers}
            answer = records.StoredResponse(
                status=response.status, body=response.body, headers=kept
            )
            await state.db.run(records.idem_put, *ident, answer, state.now())
        return response

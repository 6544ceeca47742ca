"""``Idempotency-Key``: a repeated write gets the first answer again instead of running twice.

For ``POST``, ``PATCH`` and ``PUT`` on API routes carrying an ``Idempotency-Key`` header, the
first complete response with a 2xx or 4xx status is stored under (API key, idempotency key)
with a digest of the request (method, path, query and body) and replayed, marked with
``Idempotent-Replayed: true``, for every later request with the same key and digest. The same
key with a different request (another body, path, query or method) is a client bug that would
otherwise get an answer to a request it did not send: it is refused with 422, as payment APIs
do (in the validation shape, its one problem at ``["header", "Idempotency-Key"]``, of type
``idempotency_key_reused``). Answers that invite a retry are not stored, so the retry really
runs (with any body): 5xx, and the "try again" 4xx statuses (408, 409, 425, 429). Stored
answers are kept for 24 hours and survive a restart.

The body is read here, before the handler, to take its digest (up to :data:`BODY_LIMIT`, twice
the largest body any route takes; a longer one is refused with 413) and handed to the handler
again. The client sends one key per call and the same bytes on each retry of it, so it never
meets the 422 itself.

Concurrency: requests sharing an (API key, idempotency key) are serialised by an in-process
lock, so two concurrent duplicates never both execute; the second waits for the first and
replays its answer. The answer is committed before it is sent and before the lock is
released, so the second's lookup always finds it, and so does a retry after the server was
killed right after answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3

from aiohttp import StreamReader, web

from labric.server.core import records
from labric.server.core.auth import PRINCIPAL
from labric.server.core.http import HTTPError, invalid
from labric.server.core.routing import API_PREFIX, Handler
from labric.server.core.state import STATE

__all__ = ["BODY_LIMIT", "HEADER", "REPLAYED_HEADER", "RETENTION_SECONDS", "middleware"]

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
RETENTION_SECONDS = 24 * 60 * 60
#: The longest body read for a digest (set by :func:`labric.server.app.build_app`).
BODY_LIMIT = web.AppKey("labric_idempotent_body_limit", int)
_METHODS = frozenset({"POST", "PATCH", "PUT"})
_KEPT_HEADERS = ("Content-Type", "Link", "Location", "Retry-After")
_NOT_STORED = frozenset({408, 409, 425, 429})


async def _read_body(request: web.Request) -> bytes:
    limit = request.app[BODY_LIMIT]
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise HTTPError(
                413, f"Request body is over the limit of {limit} bytes for any route", close=True
            )
    return bytes(body)


def _refeed(request: web.Request, body: bytes) -> None:
    """Give the handler the body again, as the stream it reads from."""
    # A limit above the body's size: feeding it must not pause reading the connection, which
    # would stall the next request on it if the handler leaves the body unread.
    stream = StreamReader(request.protocol, len(body) + 1, loop=asyncio.get_running_loop())
    if body:
        stream.feed_data(body)
    stream.feed_eof()
    # aiohttp has no public way to swap a request's body stream: ``content`` is a cached
    # property over ``_payload``. Every client write carries a key, so the suite covers this.
    request._payload = stream
    request._cache.pop("content", None)


def _digest(request: web.Request, body: bytes) -> str:
    parts = (request.method.encode(), request.path.encode(), request.query_string.encode(), body)
    h = hashlib.sha256()
    for part in parts:  # length-prefixed, so no two requests share a digest by concatenation
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _stored(
    conn: sqlite3.Connection, key_id: str, idem_key: str, method: str, path: str, digest: str
) -> tuple[records.StoredResponse | None, str | None]:
    """The answer stored for this request, or else the method and path the key answered."""
    rows = conn.execute(
        "SELECT method, path, digest, status, body, headers FROM idempotency "
        "WHERE key_id = ? AND idem_key = ?",
        (key_id, idem_key),
    ).fetchall()
    for row in rows:
        legacy = row["digest"] is None and (row["method"], row["path"]) == (method, path)
        if row["digest"] == digest or legacy:
            answer = records.StoredResponse(
                status=int(row["status"]),
                body=bytes(row["body"]),
                headers=json.loads(row["headers"]),
            )
            return answer, None
    return None, (f"{rows[0]['method']} {rows[0]['path']}" if rows else None)


def _store(
    conn: sqlite3.Connection,
    key_id: str,
    idem_key: str,
    method: str,
    path: str,
    digest: str,
    answer: records.StoredResponse,
    now: str,
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO idempotency (key_id, idem_key, method, path, digest, status, "
        "body, headers, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key_id,
            idem_key,
            method,
            path,
            digest,
            answer.status,
            answer.body,
            json.dumps(answer.headers),
            now,
        ),
    )


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Replay stored answers, refuse reused keys and store first answers; see the module
    docstring."""
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
    body = await _read_body(request)
    digest = _digest(request, body)
    ident = (principal.key_id, idem_key, request.method, request.path, digest)
    async with state.idempotency_locks.hold((principal.key_id, idem_key)):
        stored, used_for = await state.db.run(_stored, *ident)
        if stored is not None:
            headers = dict(stored.headers)
            headers[REPLAYED_HEADER] = "true"
            return web.Response(body=stored.body, status=stored.status, headers=headers)
        if used_for is not None:
            raise invalid(
                ["header", HEADER],
                f"This {HEADER} was already used for a different request ({used_for}, or the "
                "same route with another body or query); send a new key with a new request",
                "idempotency_key_reused",
            )
        _refeed(request, body)
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
            # Committed before the answer goes out: a server killed after answering still
            # replays this answer to the client's retry instead of running the request again.
            # (Concurrent writes share the commit, so this costs little.)
            await state.db.run(_store, *ident, answer, state.now())
        return response

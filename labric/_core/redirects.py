"""One API request on the wire, following redirects by hand.

aiohttp could follow redirects itself, but would carry the request's headers along; here each
hop's headers are worked out afresh for its URL (``headers_for``), so ``Authorization`` goes
only to the API's origin and never to a host a redirect points at. Following by hand also
decides what a hop resends: the query string and the body go only with the first request, a
``303`` (or a ``301``/``302`` of a POST) becomes a body-less GET, a ``Location`` that is not
``http``/``https`` (or does not parse) is refused as a broken answer, and after
``_MAX_REDIRECTS`` hops the request fails.

Each hop's body is read whole within its bound (:mod:`labric._core.bodies`): an error or
redirect body only up to ``_ERROR_BODY_LIMIT``. Only wire failures are mapped
(:mod:`labric._core.errormap`), so they are retried; anything else propagates as it is.

aiohttp resends an idempotent request once, unseen, when a reused connection drops before any
answer; the session's trace (``_SEND_TRACE``) counts the sends of each request into
:attr:`Response.sends`, so a DELETE's 404 after a hidden resend is known to be "already gone".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from labric._core.bodies import _ERROR_BODY_LIMIT, read_bounded
from labric._core.errormap import TRANSPORT_ERRORS, raise_mapped
from labric._core.responses import Response
from labric._core.urls import _HTTP_SCHEMES, _safe_path
from labric.errors import APIConnectionError, APIResponseValidationError

__all__ = ["send_following_redirects"]
logger = logging.getLogger("labric")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


class _Sends:
    """Counts how often aiohttp sent one request (it resends an idempotent one, unseen, once when a
    reused connection drops before any answer)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def _on_headers_sent(
    _session: aiohttp.ClientSession,
    context: Any,
    _params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    sends = context.trace_request_ctx
    if isinstance(sends, _Sends):
        sends.count += 1


_SEND_TRACE = aiohttp.TraceConfig()
_SEND_TRACE.on_request_headers_sent.append(_on_headers_sent)
_SEND_TRACE.freeze()


async def send_following_redirects(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    query: list[tuple[str, str]] | None,
    json: Any,
    data: Any,
    headers_for: Callable[[str], Mapping[str, str]],
    timeout: aiohttp.ClientTimeout | None,
    max_response_bytes: int,
    on_request: Callable[[], None],
) -> Response:
    """Send one attempt of an API request on ``session`` and return its response, whatever
    its status, after following up to ``_MAX_REDIRECTS`` redirects.

    Args:
        session: The client's session (created with ``_SEND_TRACE``).
        method: HTTP method.
        url: The absolute URL.
        query: Encoded query parameters, sent to ``url`` only.
        json: A JSON body, sent with ``method`` only.
        data: A raw body, sent with ``method`` only.
        headers_for: The headers for a hop's URL (``Authorization`` only for the API's origin).
        timeout: This request's timeouts (``None``: the session's).
        max_response_bytes: The most a 2xx body may hold.
        on_request: Called once per request sent (every hop), for the client's counters.

    Raises:
        APIConnectionError: no response, or too many redirects.
        ResponseTooLargeError: the body is over ``max_response_bytes``.
        APIResponseValidationError: the body cannot be decoded, or a redirect leaves http(s).
    """
    client_timeout = timeout or session.timeout
    current = url
    current_method = method
    for _ in range(_MAX_REDIRECTS + 1):
        started = time.perf_counter()
        on_request()
        sends = _Sends()
        try:
            async with session.request(
                current_method,
                current,
                trace_request_ctx=sends,
                params=query if current == url else None,
                json=json if current_method == method else None,
                data=data if current_method == method else None,
                headers=headers_for(current),
                timeout=client_timeout,
                allow_redirects=False,
                # Decompressed by read_bounded, which stops at the limit (aiohttp would
                # inflate a whole network chunk, bomb or not, before anyone could count it).
                auto_decompress=False,
            ) as resp:
                ok = 200 <= resp.status < 300
                content = await read_bounded(
                    resp,
                    limit=(
                        max_response_bytes if ok else min(max_response_bytes, _ERROR_BODY_LIMIT)
                    ),
                    method=current_method,
                    url=current,
                    cut=not ok,
                )
                result = Response(
                    status=resp.status,
                    headers=resp.headers,
                    content=content,
                    method=current_method,
                    path=_safe_path(current),
                    url=str(resp.url),
                    reason=resp.reason,
                    sends=max(sends.count, 1),
                )
        except TRANSPORT_ERRORS as exc:
            # Only wire failures are mapped (and so retried); a programming error such as a
            # body json.dumps cannot encode propagates as it is.
            raise_mapped(exc, method=current_method, url=current)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.1f ms [request id %s]",
                current_method,
                result.path,
                result.status,
                (time.perf_counter() - started) * 1000,
                result.request_id,
            )
        if result.status not in _REDIRECTS or "Location" not in result.headers:
            return result
        try:
            current = urljoin(current, result.headers["Location"])
            scheme = urlsplit(current).scheme.lower()
        except ValueError:
            scheme = ""
        if scheme not in _HTTP_SCHEMES:
            raise APIResponseValidationError(
                "The server redirected to a URL that is not http(s) or does not parse",
                method=current_method,
                path=result.path,
                request_id=result.request_id,
            )
        if result.status == 303 or (result.status in (301, 302) and current_method == "POST"):
            current_method = "GET"
    raise APIConnectionError("Too many redirects", method=method, path=_safe_path(url))

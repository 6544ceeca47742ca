"""Errors are mapped here, once: wire exceptions and non-2xx responses to the SDK's error tree.

Every aiohttp exception and a bare ``asyncio.TimeoutError`` become
:class:`~labric.errors.APIConnectionError` / :class:`~labric.errors.APITimeoutError`
(:func:`map_exception`); a non-2xx becomes the status's :class:`~labric.errors.APIStatusError`
subclass (:func:`make_status_error`), whatever its body (JSON, HTML, empty), carrying the method,
the path (never the query string), the server's ``detail`` and its ``X-Request-ID``.

Secrets: a wire error whose text shows the URL's query string (aiohttp puts the whole URL in some
messages, such as a connect timeout's or an invalid URL's) is not chained as the cause
(:func:`raise_mapped`), so a traceback never prints a signed URL's signature; a note names the
withheld exception instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from labric._core.bodies import _loads
from labric._core.urls import _safe_path, _strip_queries
from labric.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    status_error_class,
)

__all__ = ["TRANSPORT_ERRORS", "make_status_error", "map_exception", "raise_mapped"]


def _detail_of(body: Any) -> Any:
    if isinstance(body, dict):
        if "detail" in body:
            return body["detail"]
        if "errors" in body:
            return body["errors"]
    return body


def _problem(item: Any) -> str:
    """One problem of a 422 ``detail`` list or a 400 ``errors`` list, as ``where: what``."""
    if not isinstance(item, dict):
        return str(item)
    what = item.get("msg") or item.get("message") or item.get("type") or "invalid"
    where = item.get("loc", item.get("path"))
    if isinstance(where, list | tuple):
        where = ".".join(str(part) for part in where)
    return f"{where}: {what}" if where not in (None, "") else str(what)


def _message_of(status: int, detail: Any, reason: str | None) -> str:
    if isinstance(detail, str) and detail.strip():
        text = detail.strip()
        return text if len(text) <= 500 else text[:500] + "…"
    if isinstance(detail, list) and detail:
        more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
        return f"{_problem(detail[0])}{more}"
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def make_status_error(
    *,
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    method: str,
    url: str,
    reason: str | None = None,
) -> APIStatusError:
    """Build the status's error from a response, whatever its body (JSON, HTML, empty)."""
    body: Any
    try:
        body = _loads(content) if content else None
    except ValueError:
        body = content.decode("utf-8", "replace")
    detail = _detail_of(body)
    if isinstance(detail, str) and body is detail and detail.lstrip().startswith("<"):
        # An HTML page from an edge proxy: keep it in ``body`` but not in the message.
        detail = None
    cls = status_error_class(status)
    copied = CIMultiDict(headers)
    return cls(
        _message_of(status, detail, reason),
        status_code=status,
        detail=detail,
        body=body,
        headers=CIMultiDictProxy(copied),
        method=method,
        path=_safe_path(url),
        request_id=copied.get("X-Request-ID"),
    )


#: What the wire can raise: aiohttp's errors, OS socket errors, and a bare timeout (asyncio's
#: ``TimeoutError`` is the builtin since 3.11; aiohttp lets one escape in some paths).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, TimeoutError)


def map_exception(exc: BaseException, *, method: str, url: str) -> APIError:
    """Map an aiohttp / asyncio / OS exception to the SDK's error tree.

    Timeouts become :class:`APITimeoutError`; every other failure to get a usable response becomes
    :class:`APIConnectionError`. No message carries a URL's query string.
    """
    path = _safe_path(url)
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        kind = "read" if isinstance(exc, aiohttp.SocketTimeoutError) else "request"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            kind = "connect"
        return APITimeoutError(f"The {kind} timed out", method=method, path=path)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(
            f"Could not connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}",
            method=method,
            path=path,
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return APIConnectionError("The server closed the connection", method=method, path=path)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return APIConnectionError(
            "The response body was cut short or malformed", method=method, path=path
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        name = type(exc).__name__
        text = _strip_queries(str(exc))  # never echo a query string (signatures)
        return APIConnectionError(f"{name}: {text}" if text else name, method=method, path=path)
    text = _strip_queries(str(exc))
    return APIConnectionError(f"{type(exc).__name__}: {text}", method=method, path=path)


def _shows_query(exc: BaseException, url: str) -> bool:
    """Whether the text of ``exc`` or of anything it chains shows a URL's query string."""
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), repr(current)):
            if (query and query in text) or _strip_queries(text) != text:
                return True
        current = current.__cause__ or current.__context__
    return False


def raise_mapped(exc: BaseException, *, method: str, url: str) -> NoReturn:
    """Raise :func:`map_exception` of ``exc``, chained to it unless its text shows the query."""
    mapped = map_exception(exc, method=method, url=url)
    if mapped is exc:
        raise mapped
    if _shows_query(exc, url):
        mapped.add_note(
            f"(caused by {type(exc).__name__}, not shown: its message holds the URL's query "
            "string, which may carry a signature)"
        )
        raise mapped from None
    raise mapped from exc

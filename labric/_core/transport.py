"""The HTTP transport: the one aiohttp ``ClientSession`` of a client, and everything on the wire.

Design:

* **One session per client, created lazily inside the running loop.** aiohttp sessions are bound
  to the loop that created them; the transport records that loop and refuses (with a
  :class:`~labric.errors.UsageError`) to be used from another one. The connector's pool size comes
  from the config; its ``connect`` timeout includes the wait for a free slot.
* **Bodies.** API responses are read whole and decompressed, but never past
  ``ClientConfig.max_response_bytes``: the body is streamed and decompressed here, counting both the
  bytes received and the bytes they inflate to, and reading stops (with
  :class:`~labric.errors.ResponseTooLargeError`) the moment either passes the limit, so neither a
  huge body nor a decompression bomb reaches memory; a ``Content-Length`` over it is refused before
  reading. Error bodies are read up to a small limit and cut there. Storage streams are handed over
  as the stored bytes (``Accept-Encoding: identity``, no decompression), since checksums and byte
  ranges refer to those, and only ``http``/``https`` storage URLs are followed.
* **Timeouts per request, not per body.** ``sock_read`` fails a socket that stays silent; there is
  no ``total`` limit by default, so a multi-GB transfer is never killed for being long.
* **Auth only for the API's origin.** ``Authorization: Bearer`` goes on requests to the configured
  base URL's origin and nowhere else: signed storage URLs and redirects to other hosts never get it.
  Redirects are followed by hand for that reason.
* **Retries** follow :mod:`labric._core.retry`. Every POST and PATCH carries an
  ``Idempotency-Key`` that stays the same across that call's attempts, so a retried write is
  applied once.
* **Deletes are idempotent.** When a DELETE attempt's outcome is unknown (a 5xx, a timeout or a
  connection lost once the request may have been sent) the server may have applied it, so a 404 on a
  retry means "already gone" and the call succeeds. A 404 on the first attempt (or after attempts
  that certainly did nothing, such as a refused connection) is still a
  :class:`~labric.errors.NotFoundError`.
* **Errors are mapped here, once.** Every aiohttp exception and a bare ``asyncio.TimeoutError``
  become :class:`~labric.errors.APIConnectionError` / :class:`~labric.errors.APITimeoutError`; a
  non-2xx becomes the status's :class:`~labric.errors.APIStatusError` subclass, carrying the method,
  the path (never the query string), the server's ``detail`` and its ``X-Request-ID``.
* **Secrets.** Logs name the method, path, status and request id; never headers or query strings.
  A wire error whose text shows the URL's query string (aiohttp puts the whole URL in some
  messages, such as a connect timeout's or an invalid URL's) is not chained as the cause, so a
  traceback never prints a signed URL's signature; a note names the withheld exception instead.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import platform
import random
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from labric._core.config import ClientConfig, Timeout
from labric._core.retry import retry_delay, should_retry_status
from labric._version import __version__
from labric.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    ResponseTooLargeError,
    UsageError,
    status_error_class,
)

__all__ = [
    "Response",
    "Transport",
    "TransportStats",
    "base_url_hint",
    "check_storage_url",
    "map_exception",
    "path_segment",
    "raise_for_status",
    "raise_mapped",
    "split_link_next",
]

logger = logging.getLogger("labric")

T = TypeVar("T")

USER_AGENT = (
    f"labric-python/{__version__} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Connectors of sessions dropped after a fork: kept referenced so they are never finalized (which
# would warn, or touch sockets that belong to the parent process).
_FORGOTTEN_CONNECTORS: list[aiohttp.BaseConnector] = []
_MAX_REDIRECTS = 5
_HTTP_SCHEMES = frozenset({"http", "https"})
#: The most of an error (non-2xx) or redirect body kept: enough for any ``detail``; the rest is cut.
_ERROR_BODY_LIMIT = 1024 * 1024
_READ_CHUNK = 64 * 1024
_INFLATE_STEP = 1024 * 1024
#: The encodings the transport can decode (within its limit) and so the only ones it asks for.
_ACCEPT_ENCODING = "gzip, deflate"
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def path_segment(value: str, what: str) -> str:
    """``value`` (an id or a name) as exactly one URL path segment, ``/`` and ``%`` escaped.

    Raises:
        ValueError: ``value`` is not a non-empty string.
        UsageError: ``value`` is ``.`` or ``..``: no escaping keeps a dot segment from being read
            as "here" or "the parent" by a server or proxy that normalises paths (RFC 3986 makes
            ``%2E`` and ``.`` the same), so ``files.delete("..")`` would reach another route.
    """
    if not value or not isinstance(value, str):
        raise ValueError(f"{what} must be a non-empty string")
    if value in (".", ".."):
        raise UsageError(f"{what} {value!r} cannot be sent in a URL path; it is not a valid id")
    return quote(value, safe="")


def split_link_next(header: str | None) -> str | None:
    """Return the ``rel="next"`` target of an RFC 8288 ``Link`` header, or ``None``."""
    if not header:
        return None
    for match in _LINK_RE.finditer(header):
        target, params = match.group(1), match.group(2)
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return target
    return None


def _loads(content: bytes) -> Any:
    """``json.loads`` whose every failure is a ``ValueError``."""
    try:
        return jsonlib.loads(content)
    except RecursionError:
        # The decoder recurses once per nesting level: a hostile body ("[[[[...") exhausts the
        # stack, which is malformed input like any other, not a crash.
        raise ValueError("the JSON nests too deeply to decode") from None


@attrs.frozen(kw_only=True)
class Response:
    """A fully read API response."""

    status: int
    headers: CIMultiDictProxy[str]
    content: bytes
    method: str
    path: str
    url: str = attrs.field(repr=False)
    reason: str | None = None
    #: Times the request went out for this response: above 1 when aiohttp resent it by itself after
    #: a connection dropped, so an earlier copy may have been applied.
    sends: int = attrs.field(default=1, repr=False)

    @property
    def request_id(self) -> str | None:
        """The server's ``X-Request-ID``."""
        return self.headers.get("X-Request-ID")

    def json(self) -> Any:
        """Decode the body as JSON (an empty body decodes to ``None``).

        Raises:
            APIResponseValidationError: the body is not UTF-8 JSON (or nests too deeply to decode);
                it names the request and its request id. (It is also a ``ValueError`` for code
                written against the earlier contract.)
        """
        if not self.content:
            return None
        try:
            return _loads(self.content)
        except ValueError as exc:  # includes UnicodeDecodeError
            raise _BodyNotJSONError(
                f"Response body is not JSON ({_short(exc)})",
                method=self.method,
                path=self.path,
                request_id=self.request_id,
            ) from exc

    @property
    def next_url(self) -> str | None:
        """The absolute URL of the next page, from ``Link: <...>; rel="next"``.

        Raises:
            APIResponseValidationError: the ``Link`` header's target is not a usable URL.
        """
        target = split_link_next(self.headers.get("Link"))
        if not target:
            return None
        try:
            url = urljoin(self.url, target)
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise APIResponseValidationError(
                "The server's Link header holds a malformed next-page URL",
                method=self.method,
                path=self.path,
                request_id=self.request_id,
            ) from None
        return url


class _BodyNotJSONError(APIResponseValidationError, ValueError):
    """A body that does not decode as JSON; also a ``ValueError``, as ``Response.json`` raised."""


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:120] + "…"


def check_storage_url(url: str, *, method: str) -> None:
    """Refuse a storage URL the client must not follow: anything but ``http``/``https``.

    The server hands out these URLs; a ``file://`` or ``ftp://`` one is a broken or hostile answer,
    refused at once rather than retried as a connection failure.

    Raises:
        APIResponseValidationError: the URL does not parse or its scheme is not http(s).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise APIResponseValidationError(
            "The server handed out a storage URL that does not parse", method=method, path="?"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_SCHEMES or not parts.hostname:
        shown = repr(scheme + ":") if scheme else "no scheme"
        raise APIResponseValidationError(
            f"The server handed out a storage URL with {shown}; only http:// and https:// URLs "
            "are followed",
            method=method,
            path=parts.path or "/",
        )


@attrs.define
class TransportStats:
    """Live counters of what one client sent: read them at any time, for reports and tests.

    ``client.stats`` returns the client's own instance (never a copy), so a long bulk transfer can
    be watched while it runs. Counts start at zero when the client is created.

    aiohttp itself resends an idempotent request (GET, PUT) once, unseen, when its connection drops
    before any answer arrives, as RFC 9112 allows for a closed keep-alive connection; such a resend
    is in neither count, so a server may see a few more requests than ``requests`` says.

    Attributes:
        requests: HTTP requests sent, API and storage alike (every attempt and redirect hop).
        retries: Retries made after a failed attempt, by API requests and storage transfers.
        retries_by_reason: The retries by cause: a status (``"503"``, ``"429"``) or the error
            class of an attempt that got no response (``"APIConnectionError"``).
    """

    requests: int = 0
    retries: int = 0
    retries_by_reason: dict[str, int] = attrs.field(factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the counters."""
        return {
            "requests": self.requests,
            "retries": self.retries,
            "retries_by_reason": dict(sorted(self.retries_by_reason.items())),
        }


def _safe_path(url: str) -> str:
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return "?"


def _strip_queries(text: str) -> str:
    """Drop the query string of every URL in a message (signed URLs carry signatures there)."""
    return re.sub(r"(https?://[^\s?#'\"]*)\?[^\s'\"]*", r"\1", text)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return (scheme, None, None)
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return (scheme, parts.hostname, port)


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


#: How the local server (and the hosted API) starts the detail of a 404 for a path it has no
#: route for, as opposed to a missing object.
_NO_ROUTE = "Not found: no route for"


def base_url_hint(base_url: str, detail: Any) -> str | None:
    """A hint for a 404 that may come from a wrong base URL, else ``None``.

    The API lives under ``/api``; a base URL without it (``http://127.0.0.1:8765``, as some other
    clients take it) sends every request to a path with no route.
    """
    path = urlsplit(base_url).path.rstrip("/")
    if not path.endswith("/api"):
        return f"did you mean {base_url.rstrip('/')}/api? (the base URL includes /api)"
    if isinstance(detail, str) and detail.startswith(_NO_ROUTE):
        return f"the server at {base_url} has no such route; is that the Labric API's base URL?"
    return None


def raise_for_status(response: Response) -> Response:
    """Return a 2xx response, or raise its mapped :class:`APIStatusError`."""
    if 200 <= response.status < 300:
        return response
    raise make_status_error(
        status=response.status,
        headers=response.headers,
        content=response.content,
        method=response.method,
        url=response.url,
        reason=response.reason,
    )


class _Inflater:
    """Incremental gzip/deflate decoding whose output per call is bounded (``max_length``)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._wbits: int | None = 16 + zlib.MAX_WBITS if self._gzip else None
        self._obj: Any = None

    def feed(self, data: bytes, max_length: int) -> bytes:
        """Inflate ``data``; at most ``max_length`` bytes come out (``max_length`` >= 1)."""
        if self._obj is None:
            if self._wbits is None:
                # "deflate" is meant to be zlib-wrapped, but some servers send a raw stream.
                zlib_header = (
                    len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
                )
                self._wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
            self._obj = zlib.decompressobj(self._wbits)
        elif self._gzip and self._obj.eof and self._obj.unused_data:
            # A concatenated gzip stream: the next member starts where this one ended.
            data = self._obj.unused_data + data
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bytes(self._obj.decompress(self._obj.unconsumed_tail + data, max_length))

    @property
    def pending(self) -> bool:
        """Whether input fed earlier still waits to be inflated (call :meth:`feed` with ``b""``)."""
        obj = self._obj
        if obj is None:
            return False
        return bool(obj.unconsumed_tail) or (self._gzip and obj.eof and bool(obj.unused_data))

    @property
    def complete(self) -> bool:
        return self._obj is None or bool(self._obj.eof) or self._wbits == -zlib.MAX_WBITS


def _too_large(limit: int, what: str, *, method: str, url: str, request_id: str | None) -> NoReturn:
    raise ResponseTooLargeError(
        f"The response body {what} the client's limit of {limit:,} bytes "
        f"(max_response_bytes); reading stopped there. If such large answers are expected, "
        f"raise it: AsyncLabric(..., max_response_bytes=N)",
        limit=limit,
        method=method,
        path=_safe_path(url),
        request_id=request_id,
    )


async def read_bounded(
    resp: aiohttp.ClientResponse,
    *,
    limit: int,
    method: str,
    url: str,
    decode: bool = True,
    cut: bool = False,
) -> bytes:
    """Read a response body, never holding more than ``limit`` bytes of it.

    Both the bytes received and (with ``decode``) the bytes they decompress to are counted while
    streaming; the session never decompresses on its own, so a bomb is inflated here, a bounded
    amount at a time.

    Args:
        resp: A response whose body has not been read.
        limit: The most bytes to keep.
        method: The request's method, for errors.
        url: The request's URL, for errors (only its path is shown).
        decode: Undo ``Content-Encoding`` (gzip, deflate); else keep the bytes as received.
        cut: Stop quietly at the limit and return what was read (for error bodies) instead of
            raising :class:`~labric.errors.ResponseTooLargeError`.

    Raises:
        ResponseTooLargeError: the body (received or decompressed) is over ``limit``.
        APIResponseValidationError: the body uses an encoding the client does not support.
        APIConnectionError: the compressed body ends early or does not decompress.
    """
    try:
        return await _read_bounded(
            resp, limit=limit, method=method, url=url, decode=decode, cut=cut
        )
    finally:
        if not resp.content.at_eof():
            # The rest of the body was not read: never hand this connection out again.
            resp.close()


async def _read_bounded(
    resp: aiohttp.ClientResponse, *, limit: int, method: str, url: str, decode: bool, cut: bool
) -> bytes:
    request_id = resp.headers.get("X-Request-ID")
    length = resp.content_length
    if not cut and length is not None and length > limit:
        _too_large(
            limit,
            f"announced by Content-Length ({length:,} bytes) is over",
            method=method,
            url=url,
            request_id=request_id,
        )
    encoding = resp.headers.get("Content-Encoding", "").strip().lower() if decode else ""
    inflater: _Inflater | None = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = _Inflater(encoding)
    elif encoding not in ("", "identity"):
        if cut:
            decode = False
        else:
            raise APIResponseValidationError(
                f"The response uses Content-Encoding {encoding!r}, which the client never asks for",
                method=method,
                path=_safe_path(url),
                request_id=request_id,
            )
    out = bytearray()
    received = 0
    try:
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            received += len(chunk)
            if received > limit:
                if cut:
                    out += chunk[: max(0, limit - len(out))] if inflater is None else b""
                    break
                _too_large(
                    limit, "as received is over", method=method, url=url, request_id=request_id
                )
            if inflater is None:
                out += chunk
            else:
                # Inflated a step at a time, so one small chunk of a bomb never expands at once.
                out += inflater.feed(chunk, min(limit - len(out) + 1, _INFLATE_STEP))
                while inflater.pending and len(out) <= limit:
                    out += inflater.feed(b"", min(limit - len(out) + 1, _INFLATE_STEP))
            if len(out) > limit:
                if cut:
                    del out[limit:]
                    break
                _too_large(
                    limit,
                    "decompresses to more than",
                    method=method,
                    url=url,
                    request_id=request_id,
                )
    except zlib.error:
        if cut:
            return bytes(out)
        # Like a body cut short (aiohttp's payload errors): possibly a transient fault, retried.
        raise APIConnectionError(
            f"The response body was cut short or malformed (it does not decompress as {encoding})",
            method=method,
            path=_safe_path(url),
        ) from None
    if inflater is not None and not inflater.complete and not cut:
        raise APIConnectionError(
            "The response body was cut short or malformed", method=method, path=_safe_path(url)
        )
    return bytes(out)


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


def _maybe_sent(exc: APIConnectionError) -> bool:
    """Whether a failed attempt may have reached the server (so it may have been applied).

    Only a failure to connect at all is known to have sent nothing.
    """
    cause = exc.__cause__ or exc.__context__
    return not isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def _aiohttp_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=timeout.total,
        connect=timeout.connect,
        sock_connect=timeout.connect,
        sock_read=timeout.read,
    )


class Transport:
    """Sends requests for one client; owns its aiohttp session.

    Args:
        config: The client's resolved configuration.
    """

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._origin = _origin(config.base_url)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._auth_header = f"Bearer {config.api_key}"
        self._rng = random.Random()
        self.stats = TransportStats()

    @property
    def retries(self) -> int:
        """Total retries made (``stats.retries``)."""
        return self.stats.retries

    def __repr__(self) -> str:
        return f"<Transport {self._config.base_url} closed={self._closed}>"

    @property
    def config(self) -> ClientConfig:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    # -- session lifecycle ------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The client's session, created on first use inside the running loop."""
        if self._closed:
            raise ClientClosedError("This client has been closed; create a new one.")
        loop = asyncio.get_running_loop()
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._config.max_connections,
                limit_per_host=self._config.max_connections,
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=[_SEND_TRACE],
                timeout=_aiohttp_timeout(self._config.timeout),
                headers={"User-Agent": USER_AGENT},
                auto_decompress=False,
                raise_for_status=False,
                trust_env=False,
            )
            self._loop = loop
        elif self._loop is not loop:
            raise UsageError(
                "This client was first used in another event loop; an AsyncLabric belongs to the "
                "loop that first used it. Create one client per event loop (or use Labric)."
            )
        return self._session

    def forget_session(self) -> None:
        """Drop the session without closing it (after ``fork()``: its loop is not ours).

        Closing would shut down sockets (and TLS sessions) the parent process still uses, so the
        session is only detached from its connector (which stops it warning as unclosed) and the
        connector is parked for the life of the process instead of being finalized.
        """
        session, self._session = self._session, None
        self._loop = None
        if session is not None and not session.closed:
            connector = session.connector
            session.detach()
            if connector is not None:
                _FORGOTTEN_CONNECTORS.append(connector)

    async def aclose(self) -> None:
        """Close the session; idempotent.

        Normally called in the loop that used the client. From another loop, the session is closed
        in its own loop if that loop is still running, and dropped (see :meth:`forget_session`)
        if that loop is gone.
        """
        self._closed = True
        session, loop = self._session, self._loop
        if session is None or session.closed:
            self._session = None
            return
        running = asyncio.get_running_loop()
        if loop is None or loop is running:
            self._session = None
            await session.close()
        elif loop.is_running():
            self._session = None
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(session.close(), loop))
        else:
            self.forget_session()

    # -- helpers ----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/v1/files``."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self._config.base_url}/{path.lstrip('/')}"

    def is_api_origin(self, url: str) -> bool:
        """Whether ``url`` is on the API's origin (so it may carry the key).

        Scheme, host and port must all match (an implicit default port equals the explicit one),
        so an ``http://`` URL never matches an ``https://`` API.
        """
        return _origin(url) == self._origin

    def _headers(self, url: str, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(self._config.default_headers)
        if extra:
            headers.update(extra)
        if self.is_api_origin(url):
            headers["Authorization"] = self._auth_header
        else:
            headers.popall("Authorization", None)
        return headers

    def _api_headers(self, url: str, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
        headers = self._headers(url, extra)
        # Only what read_bounded can decode within its limit (aiohttp would offer br or zstd).
        headers.setdefault("Accept-Encoding", _ACCEPT_ENCODING)
        return headers

    def request_timeout(self, timeout: Timeout | None) -> aiohttp.ClientTimeout | None:
        """The aiohttp form of a per-request :class:`Timeout` (``None``: the client's own)."""
        return _aiohttp_timeout(timeout) if timeout is not None else None

    async def sleep_before_retry(
        self, attempt: int, headers: Mapping[str, str] | None, *, method: str, url: str, why: str
    ) -> None:
        """Wait before retry number ``attempt`` (0-based), as :func:`retry_delay` says."""
        delay = retry_delay(
            attempt, self._config.retry, headers, now=time.time(), rand=self._rng.random()
        )
        self.stats.retries += 1
        self.stats.retries_by_reason[why] = self.stats.retries_by_reason.get(why, 0) + 1
        logger.info(
            "Retrying %s %s in %.2fs (%s; retry %d of %d)",
            method,
            _safe_path(url),
            delay,
            why,
            attempt + 1,
            self._config.retry.max_retries,
        )
        await asyncio.sleep(delay)

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
    ) -> Response:
        """Send an API request with retries and return its 2xx response.

        Args:
            method: HTTP method.
            path: An API path (``/v1/files``) or an absolute URL (a ``Link`` from the server).
            params: Query parameters; ``None`` values are dropped, booleans sent as true/false.
            json: A JSON body.
            data: A raw body (bytes or ``aiohttp.FormData``), for requests that are not JSON. It is
                sent again on a retry, so it must not be a one-shot stream.
            headers: Extra headers.
            timeout: Overrides the client's timeouts for this request.
            max_retries: Overrides the client's retry count for this request.
            idempotency_key: Reuse a key (for example across a resumed operation); POST and PATCH
                get a fresh one otherwise.

        A DELETE that gets 404 on a retry, after an attempt whose outcome is unknown (a 5xx, a
        timeout, a connection lost once the request may have been sent), returns a 204 response
        instead of raising: that earlier attempt deleted the object. A 404 on the first attempt
        still raises :class:`~labric.errors.NotFoundError`.

        Raises:
            APIStatusError: a non-2xx after the last attempt.
            APIConnectionError: no response after the last attempt.
            ResponseTooLargeError: the body is over ``max_response_bytes``.
            APIResponseValidationError: the body cannot be decoded, or a redirect leaves http(s).
            ClientClosedError: the client has been closed.
            UsageError: the client is used from another event loop than the one that opened it.
        """
        method = method.upper()
        url = self.url(path)
        query = _encode_params(params)
        send_headers: CIMultiDict[str] = CIMultiDict(headers or {})
        if method in ("POST", "PATCH"):
            # One key per call, reused by every attempt, so the server applies a retried write once.
            send_headers.setdefault("Idempotency-Key", idempotency_key or uuid.uuid4().hex)
        elif idempotency_key is not None:
            send_headers.setdefault("Idempotency-Key", idempotency_key)
        retries = self._config.retry.max_retries if max_retries is None else max_retries
        attempt = 0
        # Whether an earlier DELETE attempt may have been applied without our hearing of it.
        maybe_applied = False
        while True:
            try:
                response = await self._send_once(
                    method, url, query, json, data, send_headers, timeout
                )
            except APIConnectionError as exc:
                if self._closed:
                    raise ClientClosedError(
                        "The client was closed while this request was in flight."
                    ) from exc
                if attempt >= retries:
                    raise
                maybe_applied = maybe_applied or _maybe_sent(exc)
                await self.sleep_before_retry(
                    attempt, None, method=method, url=url, why=type(exc).__name__
                )
                attempt += 1
                continue
            if 200 <= response.status < 300:
                return response
            if (
                method == "DELETE"
                and response.status == 404
                and (maybe_applied or response.sends > 1)
            ):
                # An earlier attempt whose answer was lost did the delete: the goal is reached.
                logger.info(
                    "%s %s: 404 on a retry after an attempt with an unknown outcome; the delete "
                    "was applied [request id %s]",
                    method,
                    response.path,
                    response.request_id,
                )
                return attrs.evolve(response, status=204, content=b"", reason="No Content")
            if attempt < retries and should_retry_status(response.status):
                maybe_applied = maybe_applied or response.status >= 500
                await self.sleep_before_retry(
                    attempt, response.headers, method=method, url=url, why=str(response.status)
                )
                attempt += 1
                continue
            if response.status == 404:
                self._raise_not_found(response)
            raise_for_status(response)

    def _raise_not_found(self, response: Response) -> None:
        """Raise a 404's error, with a hint when the base URL looks like the cause."""
        error = make_status_error(
            status=response.status,
            headers=response.headers,
            content=response.content,
            method=response.method,
            url=response.url,
            reason=response.reason,
        )
        hint = base_url_hint(self._config.base_url, error.detail)
        if hint:
            error.message = f"{error.message}; {hint}"
        raise error

    async def _send_once(
        self,
        method: str,
        url: str,
        query: list[tuple[str, str]] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str],
        timeout: Timeout | None,
    ) -> Response:
        session = self.session()
        client_timeout = self.request_timeout(timeout) or session.timeout
        current = url
        current_method = method
        for _ in range(_MAX_REDIRECTS + 1):
            started = time.perf_counter()
            self.stats.requests += 1
            sends = _Sends()
            try:
                async with session.request(
                    current_method,
                    current,
                    trace_request_ctx=sends,
                    params=query if current == url else None,
                    json=json if current_method == method else None,
                    data=data if current_method == method else None,
                    headers=self._api_headers(current, headers),
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
                            self._config.max_response_bytes
                            if ok
                            else min(self._config.max_response_bytes, _ERROR_BODY_LIMIT)
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

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        timeout: Timeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open one request and yield the live response, for streamed bodies.

        Used for storage URLs (which never get the key, being on another origin or carrying their
        own signature). No retries here: the transfer engine retries at the part level (see
        :meth:`retrying`). A non-2xx status raises its mapped error (with the query string, hence
        any signature, left out). Wire errors raised while the caller reads the body inside the
        ``async with`` block (a reset, a stalled socket) are mapped too; any other exception from
        the block propagates unchanged.
        """
        check_storage_url(url, method=method)
        session = self.session()
        client_timeout = self.request_timeout(timeout) or session.timeout
        in_body = False
        self.stats.requests += 1
        try:
            async with session.request(
                method,
                url,
                headers=self._storage_headers(url, headers),
                data=data,
                timeout=client_timeout,
                allow_redirects=False,
            ) as resp:
                if not 200 <= resp.status < 300:
                    content = await read_bounded(
                        resp,
                        limit=_ERROR_BODY_LIMIT,
                        method=method,
                        url=url,
                        decode=False,
                        cut=True,
                    )
                    raise make_status_error(
                        status=resp.status,
                        headers=resp.headers,
                        content=content,
                        method=method,
                        url=url,
                        reason=resp.reason,
                    )
                in_body = True
                yield resp
        except APIError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise_mapped(exc, method=method, url=url)
        except OSError as exc:
            # Inside the caller's block a plain OSError is the caller's own (a full disk, say),
            # not the wire's: aiohttp wraps socket errors in its own classes while reading.
            if in_body:
                raise
            raise_mapped(exc, method=method, url=url)

    def _storage_headers(self, url: str, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
        # Storage URLs authenticate by signature; the key is never sent to them, even when the
        # storage shares the API's origin (as on the local server).
        headers: CIMultiDict[str] = CIMultiDict(extra or {})
        headers.popall("Authorization", None)
        # Stream bodies are not decompressed, so ask for the stored bytes unless told otherwise
        # (checksums and ranges are over those bytes).
        headers.setdefault("Accept-Encoding", "identity")
        return headers

    async def retrying(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        method: str,
        url: str,
        max_retries: int | None = None,
    ) -> T:
        """Run ``op`` (one storage request), retrying it like an API request."""
        retries = self._config.retry.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            try:
                return await op()
            except APIStatusError as exc:
                if attempt >= retries or not should_retry_status(exc.status_code):
                    raise
                await self.sleep_before_retry(
                    attempt, exc.headers, method=method, url=url, why=str(exc.status_code)
                )
            except APIConnectionError as exc:
                if self._closed:
                    raise ClientClosedError(
                        "The client was closed while this request was in flight."
                    ) from exc
                if attempt >= retries:
                    raise
                await self.sleep_before_retry(
                    attempt, None, method=method, url=url, why=type(exc).__name__
                )
            attempt += 1


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        when: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        text = when.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def _encode_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters on the wire: ``None`` dropped, booleans ``true``/``false``, datetimes ISO
    8601, sequences comma-joined (as the hosted ``extensions=csv,txt``)."""
    if not params:
        return None
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            out.append((key, ",".join(_param_text(v) for v in value)))
        else:
            out.append((key, _param_text(value)))
    return out

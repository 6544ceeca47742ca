"""The HTTP transport: the one aiohttp ``ClientSession`` of a client, and everything on the wire.

Design:

* **One session per client, created lazily inside the running loop.** aiohttp sessions are bound
  to the loop that created them; the transport records that loop and refuses (with a
  :class:`~labric.errors.UsageError`) to be used from another one. The connector's pool size comes
  from the config; its ``connect`` timeout includes the wait for a free slot.
* **Bodies.** API responses are read whole and decompressed, but never past
  ``ClientConfig.max_response_bytes``, neither as received nor as inflated
  (:mod:`labric._core.bodies`). Error bodies are read up to a small limit and cut there. Storage
  streams are handed over as the stored bytes (``Accept-Encoding: identity``, no decompression),
  since checksums and byte ranges refer to those, and only ``http``/``https`` storage URLs are
  followed (:mod:`labric._core.urls`).
* **Timeouts per request, not per body.** ``sock_read`` fails a socket that stays silent; there is
  no ``total`` limit by default, so a multi-GB transfer is never killed for being long.
* **Auth only for the API's origin.** ``Authorization: Bearer`` goes on requests to the configured
  base URL's origin and nowhere else: signed storage URLs and redirects to other hosts never get it.
  Redirects are followed by hand for that reason (:mod:`labric._core.redirects`), each hop's
  headers worked out afresh for its URL.
* **Retries** follow :mod:`labric._core.retry`. Every POST and PATCH carries an
  ``Idempotency-Key`` that stays the same across that call's attempts, so a retried write is
  applied once.
* **Deletes are idempotent.** When a DELETE attempt's outcome is unknown (a 5xx, a timeout or a
  connection lost once the request may have been sent) the server may have applied it, so a 404 on a
  retry means "already gone" and the call succeeds. A 404 on the first attempt (or after attempts
  that certainly did nothing, such as a refused connection) is still a
  :class:`~labric.errors.NotFoundError`.
* **Errors are mapped once, at this boundary** (:mod:`labric._core.errormap`): every aiohttp
  exception and a bare ``asyncio.TimeoutError`` become :class:`~labric.errors.APIConnectionError`
  / :class:`~labric.errors.APITimeoutError`; a non-2xx becomes the status's
  :class:`~labric.errors.APIStatusError` subclass, carrying the method, the path (never the query
  string), the server's ``detail`` and its ``X-Request-ID``. API responses are read whole into a
  :class:`~labric._core.responses.Response` (re-exported here).
* **Secrets.** Logs name the method, path, status and request id; never headers or query strings.
  A wire error whose text shows the URL's query string is not chained as the cause, so a
  traceback never prints a signed URL's signature.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import attrs
from multidict import CIMultiDict

from labric._core.bodies import _ACCEPT_ENCODING, _ERROR_BODY_LIMIT, read_bounded
from labric._core.config import ClientConfig, Timeout
from labric._core.errormap import make_status_error, raise_mapped
from labric._core.redirects import _SEND_TRACE, send_following_redirects
from labric._core.responses import Response, raise_for_status, raise_not_found
from labric._core.retry import retry_delay, should_retry_status
from labric._core.urls import _origin, _safe_path, check_storage_url
from labric._version import __version__
from labric.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ClientClosedError,
    UsageError,
)

__all__ = [
    "Response",
    "Transport",
    "TransportStats",
    "raise_for_status",
]
logger = logging.getLogger("labric")

T = TypeVar("T")

USER_AGENT = (
    f"labric-python/{__version__} python/{platform.python_version()} aiohttp/{aiohttp.__version__}"
)
# Connectors of sessions dropped after a fork: kept referenced so they are never finalized (which
# would warn, or touch sockets that belong to the parent process).
_FORGOTTEN_CONNECTORS: list[aiohttp.BaseConnector] = []


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

    def _count_request(self) -> None:
        self.stats.requests += 1

    def request_timeout(self, timeout: Timeout | None) -> aiohttp.ClientTimeout | None:
        """The aiohttp form of a per-request :class:`Timeout` (``None``: the client's own)."""
        return _aiohttp_timeout(timeout) if timeout is not None else None

    async def sleep_before_retry(
        self,
        attempt: int,
        headers: Mapping[str, str] | None,
        *,
        method: str,
        url: str,
        why: str,
        deadline: float | None = None,
    ) -> None:
        """Wait before retry number ``attempt`` (0-based), as :func:`retry_delay` says.

        ``deadline`` (seconds) names the transfer retry deadline that allows this retry, for the
        log line, when it goes past ``max_retries``.
        """
        delay = retry_delay(
            attempt, self._config.retry, headers, now=time.time(), rand=self._rng.random()
        )
        self.stats.retries += 1
        self.stats.retries_by_reason[why] = self.stats.retries_by_reason.get(why, 0) + 1
        if deadline is not None and attempt >= self._config.retry.max_retries:
            bound = f"within the {deadline:g} s transfer retry deadline"
        else:
            bound = f"of {self._config.retry.max_retries}"
        logger.info(
            "Retrying %s %s in %.2fs (%s; retry %d %s)",
            method,
            _safe_path(url),
            delay,
            why,
            attempt + 1,
            bound,
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
                response = await send_following_redirects(
                    self.session(),
                    method,
                    url,
                    query=query,
                    json=json,
                    data=data,
                    headers_for=lambda hop: self._api_headers(hop, send_headers),
                    timeout=self.request_timeout(timeout),
                    max_response_bytes=self._config.max_response_bytes,
                    on_request=self._count_request,
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
                raise_not_found(response, self._config.base_url)
            raise_for_status(response)

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

    @asynccontextmanager
    async def api_stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one API request and yield its live 2xx response, for a streamed answer.

        Unlike :meth:`request` it is sent once: never retried (a stream may have done work the
        caller saw part of, as the hosted platform's streams are never retried) and no redirect
        is followed (a 3xx is raised like any other non-2xx). The body is handed over as
        received, not decompressed (``Accept-Encoding: identity`` is asked for). The caller maps
        errors raised while it reads the body; the response is released when the block exits.

        Raises:
            APIStatusError: a non-2xx status, with the server's ``detail``.
            APIConnectionError: no response.
            ClientClosedError: the client has been closed.
        """
        method = method.upper()
        url = self.url(path)
        send = self._headers(url, headers)
        send["Accept-Encoding"] = "identity"
        session = self.session()
        self._count_request()
        entered = False
        try:
            async with session.request(
                method, url, json=json, headers=send, allow_redirects=False
            ) as resp:
                if not 200 <= resp.status < 300:
                    content = await read_bounded(
                        resp, limit=_ERROR_BODY_LIMIT, method=method, url=url, cut=True
                    )
                    raise make_status_error(
                        status=resp.status,
                        headers=resp.headers,
                        content=content,
                        method=method,
                        url=url,
                        reason=resp.reason,
                    )
                entered = True
                # Leaving the block with the body unread drops the connection (not reused).
                yield resp
        except APIError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if entered:
                raise  # the caller's own, raised while it read the body: it maps them
            if self._closed:
                raise ClientClosedError(
                    "The client was closed while this request was in flight."
                ) from exc
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
        deadline: float | None = None,
    ) -> T:
        """Run ``op`` (one storage request), retrying transient failures like an API request.

        Transient means connection errors, timeouts and the statuses of
        :func:`~labric._core.retry.should_retry_status`; anything else is raised at once. Up to
        ``RetryPolicy.max_retries`` retries are made, and with ``deadline`` (seconds, a transfer's
        ``TransferConfig.retry_deadline``) more while less than that passed since ``op`` was
        first tried. ``max_retries=0`` turns retries off either way.

        Args:
            op: Makes the request once; called again for each attempt, so it must not hold
                state that one attempt uses up (re-read a body, reuse an idempotency key).
            method: The request's method, for logs.
            url: The request's URL or API path, for logs (only its path is ever logged).
            deadline: How long retries may go on past ``max_retries``.
        """
        retries = self._config.retry.max_retries
        until = time.monotonic() + (deadline or 0.0)

        def may_retry(attempt: int) -> bool:
            return retries > 0 and (attempt < retries or time.monotonic() < until)

        attempt = 0
        while True:
            try:
                return await op()
            except APIStatusError as exc:
                if not should_retry_status(exc.status_code) or not may_retry(attempt):
                    raise
                headers: Mapping[str, str] | None = exc.headers
                why = str(exc.status_code)
            except APIConnectionError as exc:
                if self._closed:
                    raise ClientClosedError(
                        "The client was closed while this request was in flight."
                    ) from exc
                if not may_retry(attempt):
                    raise
                headers, why = None, type(exc).__name__
            await self.sleep_before_retry(
                attempt, headers, method=method, url=url, why=why, deadline=deadline
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

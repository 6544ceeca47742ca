"""A fully read API response, and raising its mapped error.

:class:`Response` is what :meth:`~labric._core.transport.Transport.request` returns: status,
headers and the whole body (read within its bound by :mod:`labric._core.bodies`), with the
method and the path (never the query string) for error messages and logs. A non-2xx response
raises the status's :class:`~labric.errors.APIStatusError` subclass, mapped once by
:mod:`labric._core.errormap`; a 404 names the configured base URL as the likely cause when the
server's ``detail`` suggests a wrong one (:func:`raise_not_found`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
from multidict import CIMultiDictProxy

from labric._core.bodies import _loads
from labric._core.errormap import make_status_error
from labric._core.urls import base_url_hint, split_link_next
from labric.errors import APIResponseValidationError

__all__ = ["Response", "raise_for_status", "raise_not_found"]


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


def raise_not_found(response: Response, base_url: str) -> None:
    """Raise a 404's error, with a hint when the base URL looks like the cause."""
    error = make_status_error(
        status=response.status,
        headers=response.headers,
        content=response.content,
        method=response.method,
        url=response.url,
        reason=response.reason,
    )
    hint = base_url_hint(base_url, error.detail)
    if hint:
        error.message = f"{error.message}; {hint}"
    raise error

"""URLs: path segments, ``Link`` headers, and which URLs the client follows or shows.

* An id or a name goes into a URL path as exactly one segment (:func:`path_segment`): ``/`` and
  ``%`` escaped, dot segments refused, so no value reaches another route.
* Only ``http``/``https`` storage URLs are followed (:func:`check_storage_url`); a ``file://``
  or ``ftp://`` one is a broken or hostile answer, refused at once rather than retried.
* Origins (:func:`_origin`: scheme, host, port with the default filled in) decide where the
  ``Authorization`` header may go.
* Secrets: what the client shows of a URL is its path (:func:`_safe_path`), never its query
  string, which carries a signed URL's signature (:func:`_strip_queries`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

from labric.errors import APIResponseValidationError, UsageError

__all__ = ["base_url_hint", "check_storage_url", "path_segment", "split_link_next"]

_HTTP_SCHEMES = frozenset({"http", "https"})
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

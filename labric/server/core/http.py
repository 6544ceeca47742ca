"""HTTP plumbing shared by the server's handlers: JSON responses, errors, request validation.

Handlers raise :class:`HTTPError` for every failure they mean to report; the app's middlewares turn
it into the hosted API's body shapes (``{"detail": "..."}``, and for 422
``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``). Request bodies are read through
:func:`read_json_object`, which never lets malformed input become a 500, and validated with
:class:`Fields`, which collects every problem before answering 422 once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "DEFAULT_JSON_LIMIT",
    "Fields",
    "HTTPError",
    "decode_json",
    "error_response",
    "invalid",
    "json_response",
    "read_json_object",
]

#: The largest JSON request body the API routes accept.
DEFAULT_JSON_LIMIT = 1024 * 1024


class HTTPError(Exception):
    """An error answer: the status, the ``detail`` to send and optional extra headers.

    Args:
        status: The HTTP status (4xx or 5xx).
        detail: A human-readable string, or (for 422) the list of validation problems.
        headers: Extra response headers, e.g. ``Retry-After``.
        close: Close the connection after answering (used when the request body was not read).
    """

    def __init__(
        self,
        status: int,
        detail: Any,
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.close = close


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response with compact encoding."""
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(
    status: int, detail: Any, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A ``{"detail": ...}`` response."""
    return json_response({"detail": detail}, status=status, headers=headers)


#: The JSON object body of a request, once read.
_JSON_BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("labric_json_body", dict)


def _problem(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> HTTPError:
    """A 422 with one problem, e.g. ``invalid(["body", "file"], "Field required", "missing")``."""
    return HTTPError(422, [_problem(loc, msg, kind)])


async def read_json_object(
    request: web.Request, *, optional: bool = False, limit: int = DEFAULT_JSON_LIMIT
) -> dict[str, Any]:
    """Read the request body as a JSON object.

    Args:
        request: The request.
        optional: Accept a missing or empty body (returned as ``{}``); ``null`` counts as empty.
        limit: The largest body accepted, in bytes (413 above it).

    Raises:
        HTTPError: 413 for a body over ``limit``, 400 for a body that is not JSON, 422 for JSON
            that is not an object (or a missing body when one is required).
    """
    if _JSON_BODY in request:
        return request[_JSON_BODY]  # read (with these arguments) by the route's declared checks
    if request.content_length is not None and request.content_length > limit:
        raise HTTPError(
            413, f"Request body is over the limit of {limit} bytes for this route", close=True
        )
    raw = bytearray()
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        raw += chunk
        if len(raw) > limit:
            raise HTTPError(
                413, f"Request body is over the limit of {limit} bytes for this route", close=True
            )
    if not raw:  # whitespace alone is not JSON either: decode_json refuses it below
        if not optional:
            raise HTTPError(422, [_problem(["body"], "A JSON body is required", "missing")])
        data: Any = {}
    else:
        data = decode_json(raw)
    if data is None and optional:
        data = {}
    if not isinstance(data, dict):
        raise HTTPError(422, [_problem(["body"], "The body must be a JSON object", "dict_type")])
    request[_JSON_BODY] = data
    return data


def decode_json(raw: bytes | bytearray) -> Any:
    """Decode a JSON request body, refusing what would fail later as a 500.

    Raises:
        HTTPError: 400 for a body that is not JSON, is nested too deeply to decode, or holds a
            lone UTF-16 surrogate.
    """
    try:
        data = json.loads(raw, parse_constant=_not_a_number, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        # The C scanner recurses once per nesting level; a hostile body can exhaust the stack.
        raise HTTPError(400, "Request body is not valid JSON: it is nested too deeply") from None
    if _MAYBE_SURROGATE.search(raw) and _holds_surrogate(data):
        # ``json`` decodes "\ud800" (and raw UTF-8-encoded surrogates) to lone surrogates, which
        # no UTF-8 encoder (SQLite's, our own response's) accepts later on.
        raise HTTPError(
            400, "Request body is not valid JSON: it holds a lone UTF-16 surrogate, not text"
        )
    return data


def _not_a_number(name: str) -> Any:
    # JSON has no NaN or Infinity. Python's decoder takes them, and a body holding one would be
    # stored, and sent back as something no JSON parser reads (or fail to store: a 500).
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a valid JSON number, but no float holds it
        raise ValueError(f"{text[:30]} is beyond the range of a number")
    return value


#: An integer in a query string: ASCII digits, an optional sign, spaces or tabs around.
_QUERY_INTEGER = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*")


#: What a lone surrogate looks like in a body: a ``\uD800``-``\uDFFF`` escape, or the raw
#: (invalid) UTF-8 of one, which ``json.loads`` lets through on bytes.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _holds_surrogate(data: Any) -> bool:
    """Whether any string (key or value) in decoded JSON holds a lone surrogate."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Fields:
    """Reads typed fields from a JSON object or a query string, collecting problems.

    ``null`` is treated as absent; unknown fields are ignored. Call :meth:`check` after reading
    every field: it raises one 422 listing all problems.

    Args:
        data: The decoded JSON object, or the request's query mapping.
        where: ``"body"`` or ``"query"`` (the first element of each problem's ``loc``). Query
            values arrive as strings and are converted.
    """

    def __init__(self, data: Mapping[str, Any], where: str = "body") -> None:
        self._data = data
        self._where = where
        self.problems: list[dict[str, Any]] = []

    def _get(self, name: str, required: bool) -> Any:
        value = self._data.get(name)
        if value is None and required:
            self.problems.append(_problem([self._where, name], "Field required", "missing"))
        return value

    def string(self, name: str, *, required: bool = False, max_length: int = 1024) -> str | None:
        """A string field (``None`` when absent)."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problems.append(
                _problem([self._where, name], "Input should be a valid string", "string_type")
            )
            return None
        if required and not value.strip():
            self.problems.append(
                _problem([self._where, name], "String should not be empty", "string_too_short")
            )
            return None
        if len(value) > max_length:
            self.problems.append(
                _problem(
                    [self._where, name],
                    f"String should have at most {max_length} characters",
                    "string_too_long",
                )
            )
            return None
        return value

    def integer(
        self,
        name: str,
        *,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer field (``None`` when absent); query strings are parsed."""
        value = self._get(name, required)
        if value is None:
            return None
        if self._where == "query" and isinstance(value, str):
            # int() also takes "1_000", non-ASCII digits and any Unicode space around them.
            try:
                value = int(value) if _QUERY_INTEGER.fullmatch(value) else None
            except ValueError:  # more digits than int() converts
                value = None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.append(
                _problem([self._where, name], "Input should be a valid integer", "int_parsing")
            )
            return None
        if minimum is not None and value < minimum:
            self.problems.append(
                _problem(
                    [self._where, name],
                    f"Input should be greater than or equal to {minimum}",
                    "greater_than_equal",
                )
            )
            return None
        if maximum is not None and value > maximum:
            self.problems.append(
                _problem(
                    [self._where, name],
                    f"Input should be less than or equal to {maximum}",
                    "less_than_equal",
                )
            )
            return None
        return value

    def array(self, name: str, *, required: bool = False) -> list[Any] | None:
        """A list field (``None`` when absent)."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problems.append(
                _problem([self._where, name], "Input should be a valid list", "list_type")
            )
            return None
        return value

    def add(self, loc: list[str | int], msg: str, kind: str = "value_error") -> None:
        """Record a problem found by the caller (``loc`` without the leading ``body``)."""
        self.problems.append(_problem([self._where, *loc], msg, kind))

    def check(self) -> None:
        """Raise a 422 listing every problem found so far, if any."""
        if self.problems:
            raise HTTPError(422, list(self.problems))

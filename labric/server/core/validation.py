"""Request checks derived from route declarations, run before the handler.

:class:`~labric.server.core.routing.Router` wraps every API handler with :func:`checked`, which
applies what the route's :class:`~labric.server.core.declare.Operation` says about the request:

* Query parameters: each declared one that is present must fit its schema: an integer (ASCII
  digits, as :class:`~labric.server.core.http.Fields` reads them) within ``minimum`` and
  ``maximum``, a string within ``maxLength`` and matching ``pattern``, one of ``enum`` (a query
  boolean in any case). Every problem is answered at once, as a 422 in the hosted shape
  (``{"detail": [{"loc": ["query", name], "msg", "type"}]}``). Parameters the route does not
  declare are ignored, as the hosted API (FastAPI) ignores them.
* A JSON body the declaration marks ``checked``: read (within the declared limit: 413 above it),
  decoded (400 when it is not JSON) and required to be an object, and present when the body is
  required (422). The handler's :func:`~labric.server.core.http.read_json_object` then gets the
  object already read. What the fields of the body must hold stays with the handler, which knows
  the rules the schema cannot say (and words its answers in the hosted API's terms).

Storage routes are checked by their signature instead (:mod:`labric.server.core.signing`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from labric.server.core.declare import Operation, Param
from labric.server.core.http import Fields, read_json_object

__all__ = ["check_query", "checked"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: A boolean query parameter's values (any case), as ``QUERY_BOOLEAN`` declares them.
_BOOLEAN_WORDS = frozenset({"true", "false"})


def _choices(values: Sequence[object]) -> str:
    words = [repr(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _check_string(f: Fields, param: Param, value: str) -> None:
    schema = param.schema
    enum = schema.get("enum")
    if enum is not None:
        if set(enum) >= _BOOLEAN_WORDS:
            if value.strip().lower() not in enum:
                f.add([param.name], "Input should be a valid boolean", "bool_parsing")
        elif value not in enum:
            f.add([param.name], f"Input should be {_choices(enum)}", "enum")
        return
    if f.string(param.name, max_length=schema.get("maxLength", len(value))) is None:
        return
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, value) is None:
        f.add([param.name], f"String should match pattern '{pattern}'", "string_pattern_mismatch")


def check_query(op: Operation, request: web.Request) -> None:
    """Check the request's query against the route's declared query parameters.

    Raises:
        HTTPError: 422 listing every problem.
    """
    f = Fields(request.query, "query")
    for param in op.params:
        if param.where != "query":
            continue
        value = request.query.get(param.name)
        if value is None:
            if param.required:
                f.add([param.name], "Field required", "missing")
            continue
        if param.schema.get("type") == "integer":
            f.integer(
                param.name, minimum=param.schema.get("minimum"), maximum=param.schema.get("maximum")
            )
        else:
            _check_string(f, param, value)
    f.check()


def checked(op: Operation, handler: Handler) -> Handler:
    """``handler`` behind the checks ``op`` declares (itself when there are none)."""
    has_query = any(p.where == "query" for p in op.params)
    body = op.body
    reads_json = body is not None and body.checked and body.media_type == "application/json"
    if op.storage or not (has_query or reads_json):
        return handler

    @functools.wraps(handler)
    async def checked_handler(request: web.Request) -> web.StreamResponse:
        if has_query:
            check_query(op, request)
        if reads_json:
            assert body is not None
            await read_json_object(request, optional=not body.required, limit=body.limit)
        return await handler(request)

    return checked_handler

"""The local API's OpenAPI 3.1 document, assembled from the routes' declarations.

``GET /api/v1/openapi.json`` (public) serves it. Nothing here describes a route: each route
declares its method, path, scope, parameters, body and answers once, next to its handler (an
:class:`~labric.server.core.declare.Operation`, registered through
:class:`~labric.server.core.routing.Router`), and each resource package's ``wire`` module holds
its family's component schemas. :func:`build_document` assembles the registered declarations, in
registration order, and adds what every operation shares, once, from what the operation says
about itself:

* security: bearer for every API route, none for storage routes and this document
  (``x-labric-scope`` names the scope the route needs, as registered with the router);
* ``Idempotency-Key`` on API ``POST``/``PATCH``/``PUT`` routes (and its 400, and its 422 for a
  key reused with another request);
* ``X-Request-ID`` on every response, ``Link`` on paginated listings, ``Retry-After`` on 429;
* error bodies: ``{"detail": str}``, 422 ``{"detail": [{"loc", "msg", "type"}]}``, and the
  statuses every route of a kind can answer: 401/403 where a key is needed, 400/413/422 where
  a JSON body is read, 413 for a body declared far too large (over 1 MiB for a GET, HEAD or
  DELETE route, which takes none), 429/503 where fault injection reaches (all but the admin
  routes), 500; and on every route the HTTP layer's own plain-text 400 for a request line or
  header over its limit (before any middleware, so without ``X-Request-ID``).

``tests/openapi`` compares the document with the application's registered routes and scopes,
validates it as OpenAPI 3.1, checks one real successful answer of every operation against it (a
new operation needs a step in ``test_document.py``), and runs schemathesis against a live server
with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from labric.server.core.declare import (
    PUBLIC,
    STRING,
    Family,
    JSONSchema,
    Operation,
    Param,
    Response,
    array,
    obj,
    path_param,
    record,
    ref,
    string,
)
from labric.server.core.routing import ROUTE_DECLARATIONS, Declared, Router, Routes

__all__ = ["OPENAPI_PATH", "ROUTES", "build_document", "register"]

#: Where the document is served (under the API prefix).
OPENAPI_PATH = "/v1/openapi.json"

# -- what every operation shares ---------------------------------------------------------------

_SHARED_SCHEMAS: dict[str, JSONSchema] = {
    "Error": record({"detail": STRING}, description="An error: what went wrong"),
    "ValidationError": record(
        {
            "detail": array(
                record(
                    {
                        "loc": array({"type": ["string", "integer"]}),
                        "msg": STRING,
                        "type": STRING,
                    }
                ),
                minItems=1,
            )
        },
        description="Every problem of the request (422)",
    ),
}

_SHARED_ERRORS = {
    400: "Bad request",
    401: "No API key, or one that is invalid, revoked or expired",
    403: "The API key lacks the scope this route needs",
    404: "Not found",
    409: "Conflict",
    412: "Precondition failed",
    413: "The request body is over this route's limit",
    416: "Range not satisfiable",
    422: "The request does not validate: every problem is listed",
    429: "Too many requests (or injected by fault injection): retry after Retry-After seconds",
    500: "Internal server error (or injected by fault injection)",
    503: "Service unavailable (injected by fault injection)",
}

_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT"})
#: Methods whose routes take no body: one declared over 1 MiB is refused.
_BODYLESS = frozenset({"GET", "HEAD", "DELETE"})
#: aiohttp's parser answers a request line or header over its limits itself, in plain text and
#: without X-Request-ID, before any route or middleware runs.
_HTTP_LIMITS = "The request line or a header is over the HTTP limit of 8190 bytes (plain text)"


def _is_admin(op: Operation) -> bool:
    return op.path.startswith("/v1/admin/")


def _error_statuses(op: Operation) -> dict[int, str]:
    """Route-specific errors plus those every route of its kind can answer."""
    statuses: dict[int, str] = {}
    if op.scope != PUBLIC:
        statuses[401] = _SHARED_ERRORS[401]
        statuses[403] = _SHARED_ERRORS[403]
    if op.body is not None and op.body.media_type == "application/json":
        statuses[400] = "The body is not valid JSON"
        statuses[413] = _SHARED_ERRORS[413]
        statuses[422] = _SHARED_ERRORS[422]
    if op.body is not None and op.body.media_type == "multipart/form-data":
        statuses[413] = _SHARED_ERRORS[413]
        statuses[422] = _SHARED_ERRORS[422]
    if op.body is None and op.method in _BODYLESS:
        statuses[413] = "A body declared over 1 MiB (the route takes none)"
    elif not op.storage:
        statuses.setdefault(413, "A body declared far over what any route takes")
    if any(p.where == "query" for p in op.params) and not op.storage:
        statuses[422] = _SHARED_ERRORS[422]
    if op.method in _WRITE_METHODS and not op.storage and op.scope != PUBLIC:
        statuses.setdefault(400, "Idempotency-Key is empty or over 255 characters")
        statuses.setdefault(422, "Idempotency-Key already used for a different request")
    if not _is_admin(op):
        statuses[429] = _SHARED_ERRORS[429]
        statuses[503] = _SHARED_ERRORS[503]
    # Any route: the HTTP layer refuses these before routing (see _error_response).
    statuses.setdefault(400, _HTTP_LIMITS)
    statuses[500] = _SHARED_ERRORS[500]
    for status, why in op.errors.items():
        shared = statuses.get(status)
        statuses[status] = why if shared is None else f"{why}; or: {shared}"
    return dict(sorted(statuses.items()))


def _header(schema: JSONSchema, description: str = "", required: bool = False) -> JSONSchema:
    header: JSONSchema = {"schema": schema}
    if description:
        header["description"] = description
    if required:
        header["required"] = True
    return header


_REQUEST_ID = _header(STRING, "The request's id (errors name it too)", required=True)
_LINK = _header(STRING, 'The next page: <url>; rel="next" (absent on the last page)')
_RETRY_AFTER = _header(string(pattern="^[0-9]+$"), "Seconds to wait before retrying")
_WWW_AUTHENTICATE = _header(STRING, "Bearer")


def _error_response(op: Operation, status: int, description: str) -> JSONSchema:
    schema = op.error_schemas.get(status) or ref("ValidationError" if status == 422 else "Error")
    content: JSONSchema = {"application/json": {"schema": schema}}
    headers: dict[str, JSONSchema] = {"X-Request-ID": _REQUEST_ID}
    if status == 400:
        content["text/plain"] = {"schema": STRING}
        headers["X-Request-ID"] = _header(
            STRING, _REQUEST_ID["description"] + "; not on the HTTP layer's plain-text answers"
        )
    if status == 429:
        headers["Retry-After"] = _RETRY_AFTER
    if status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    return {
        "description": description,
        "headers": headers,
        "content": content,
    }


def _success_response(op: Operation, response: Response) -> JSONSchema:
    headers: dict[str, JSONSchema] = {"X-Request-ID": _REQUEST_ID}
    headers.update({name: _header(s) for name, s in response.headers.items()})
    if op.paginated and response.status == 200:
        headers["Link"] = _LINK
    out: JSONSchema = {"description": response.description, "headers": headers}
    if response.schema is not None:
        out["content"] = {response.media_type: {"schema": response.schema}}
    return out


def _parameter(param: Param) -> JSONSchema:
    out: JSONSchema = {"name": param.name, "in": param.where, "schema": param.schema}
    if param.description:
        out["description"] = param.description
    if param.required or param.where == "path":
        out["required"] = True
    return out


def _operation(op: Operation, family: Family) -> JSONSchema:
    params = list(op.params)
    named = {p.name for p in params if p.where == "path"}
    for segment in op.full_path.split("/"):
        if segment.startswith("{") and segment.strip("{}") not in named:
            params.append(path_param(segment.strip("{}"), ""))
    if op.method in _WRITE_METHODS and not op.storage and op.scope != PUBLIC:
        params.append(
            Param(
                name="Idempotency-Key",
                where="header",
                schema=string(minLength=1, maxLength=255),
                description="Repeats of the request with the same key get the first answer "
                "again; another request under the key gets 422",
            )
        )
    out: JSONSchema = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag or family.tag],
        "security": [] if op.scope == PUBLIC else [{"bearer": []}],
        "x-labric-scope": op.scope,
        "x-labric-hosted": op.hosted,
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = [_parameter(p) for p in params]
    if op.body is not None:
        schema = op.body.schema
        if not op.body.required and op.body.media_type == "application/json":
            schema = {"anyOf": [schema, {"type": "null"}]}  # a JSON null counts as no body
        body: JSONSchema = {
            "required": op.body.required,
            "content": {op.body.media_type: {"schema": schema}},
        }
        if op.body.description:
            body["description"] = op.body.description
        out["requestBody"] = body
    responses: dict[str, JSONSchema] = {}
    for response in op.responses:
        answer = _success_response(op, response)
        earlier = responses.get(str(response.status))
        if earlier is not None and "content" in answer:
            # One status answered in several media types (JSON, or an event stream on request).
            answer["content"] = {**earlier.get("content", {}), **answer["content"]}
        responses[str(response.status)] = answer
    for status, why in _error_statuses(op).items():
        responses[str(status)] = _error_response(op, status, why)
    out["responses"] = responses
    return out


def build_document(declared: Sequence[Declared]) -> dict[str, Any]:
    """Assemble the OpenAPI document of the ``declared`` routes (see the module docstring).

    Raises:
        ValueError: Two families define a component schema of the same name differently.
    """
    from labric._version import __version__

    paths: dict[str, dict[str, Any]] = {}
    schemas = dict(_SHARED_SCHEMAS)
    tags: list[dict[str, str]] = []
    families: list[Family] = []
    for entry in declared:
        op, family = entry.operation, entry.family
        if family not in families:
            families.append(family)
            tags.append({"name": family.tag, "description": family.description})
            for name, schema in family.schemas.items():
                if name in schemas:
                    raise ValueError(f"Two families define the schema {name}")
                schemas[name] = schema
        paths.setdefault(op.full_path, {})[op.method.lower()] = _operation(op, family)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Labric local API",
            "version": __version__,
            "description": "The local Labric server: the hosted routes it is wire-compatible "
            'with (x-labric-hosted) and its local additions. Errors are {"detail": ...}; '
            "listings link their next page with a Link header.",
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: lbk_<prefix>_<secret>",
                }
            },
        },
    }


class _Served:
    """The document an application serves, assembled on its first request (the application's
    routes are all registered by then, and it cannot take new keys once running)."""

    def __init__(self) -> None:
        self.body: bytes | None = None


_SERVED = web.AppKey("labric_openapi_document", _Served)

ROUTES = Routes(Family(tag="meta", description="This document"))


@ROUTES.route(
    Operation(
        method="GET",
        path=OPENAPI_PATH,
        scope=PUBLIC,
        summary="This OpenAPI 3.1 document",
        responses=(Response(schema=obj({"openapi": STRING}, required=["openapi"])),),
    )
)
async def serve_document(request: web.Request) -> web.StreamResponse:
    """``GET /v1/openapi.json``: the document of the application's routes (public)."""
    served = request.app[_SERVED]
    if served.body is None:
        declared: list[Declared] = request.app[ROUTE_DECLARATIONS]
        doc = build_document(declared)
        served.body = json.dumps(doc, separators=(",", ":")).encode()
    return web.Response(body=served.body, content_type="application/json")


def register(router: Router) -> None:
    """Add the document's route (register it last: it documents the routes added before)."""
    router.add(ROUTES)
    router.app.setdefault(_SERVED, _Served())

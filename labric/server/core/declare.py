"""How a route declares itself: its method, path, scope, parameters, body and answers.

Every route of the local server is added through :class:`~labric.server.core.routing.Router`
from an :class:`Operation` declared next to its handler (see :class:`~.routing.Routes`). The
same declaration serves three purposes: the router adds the route with its scope, the request
checks in :mod:`labric.server.core.validation` read its query parameters and JSON body, and
:mod:`labric.server.openapi` writes it into the OpenAPI document. Component schemas belong to a
:class:`Family` (one per tag), kept in each resource package's ``wire`` module.

The JSON Schema building blocks below keep those declarations short; ``record`` (an answer:
every property sent, no other) and ``request`` (a body: optional properties may be ``null``)
carry the document's strictness.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from labric.server.core.http import DEFAULT_JSON_LIMIT

__all__ = [
    "ANY",
    "API_PREFIX",
    "BOOLEAN",
    "CURSOR",
    "DATETIME",
    "EXECUTION_ID",
    "FILE_ID",
    "INTEGER",
    "JOB_ID",
    "LIMIT",
    "NUMBER",
    "OBJECT",
    "PAGE",
    "PAGE_SIZE",
    "PUBLIC",
    "QUERY_BOOLEAN",
    "STRING",
    "Body",
    "Family",
    "JSONSchema",
    "Operation",
    "Param",
    "Response",
    "array",
    "integer",
    "nullable",
    "obj",
    "path_param",
    "record",
    "ref",
    "request",
    "string",
]

API_PREFIX = "/api"
#: The scope recorded for routes that take no API key (signed storage URLs, the API document).
PUBLIC = "public"

JSONSchema = dict[str, Any]
#: A regular expression anchored at both ends, with no anchors or braces inside.
_ANCHORED = re.compile(r"\^[^^${}]*(\{[0-9,]+\}[^^${}]*)*\$")

# -- schema building blocks --------------------------------------------------------------------

STRING: JSONSchema = {"type": "string"}
INTEGER: JSONSchema = {"type": "integer"}
NUMBER: JSONSchema = {"type": "number"}
BOOLEAN: JSONSchema = {"type": "boolean"}
DATETIME: JSONSchema = {"type": "string", "format": "date-time"}
ANY: JSONSchema = {}
OBJECT: JSONSchema = {"type": "object"}


def ref(name: str) -> JSONSchema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: JSONSchema) -> JSONSchema:
    """``schema`` or ``null``."""
    kind = schema.get("type")
    if isinstance(kind, str) and "$ref" not in schema:
        out = {**schema, "type": [kind, "null"]}
        if "enum" in schema:
            out["enum"] = [*schema["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: JSONSchema, **extra: Any) -> JSONSchema:
    """A JSON array of ``items``."""
    return {"type": "array", "items": items, **extra}


def string(**extra: Any) -> JSONSchema:
    """A string with constraints (``maxLength=...``, ``enum=[...]``)."""
    return {"type": "string", **extra}


def integer(**extra: Any) -> JSONSchema:
    """An integer with constraints (``minimum=...``)."""
    return {"type": "integer", **extra}


def obj(
    properties: Mapping[str, JSONSchema],
    *,
    required: Sequence[str] = (),
    description: str | None = None,
    **extra: Any,
) -> JSONSchema:
    """A JSON object; unknown properties are allowed unless ``additionalProperties`` says no."""
    schema: JSONSchema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    schema.update(extra)
    return schema


def record(
    properties: Mapping[str, JSONSchema],
    *,
    optional: Sequence[str] = (),
    description: str | None = None,
) -> JSONSchema:
    """A response object: every property is always sent, except those in ``optional``, and no
    other (so an answer that grew a field the document lacks fails the document's tests)."""
    return obj(
        properties,
        required=[name for name in properties if name not in optional],
        description=description,
        additionalProperties=False,
    )


def request(
    properties: Mapping[str, JSONSchema],
    *,
    required: Sequence[str] = (),
    description: str | None = None,
) -> JSONSchema:
    """A request object: optional properties may be ``null`` (the server reads it as absent)."""
    return obj(
        {name: s if name in required else nullable(s) for name, s in properties.items()},
        required=required,
        description=description,
    )


# -- what a route declares ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Param:
    """A query, path or header parameter."""

    name: str
    where: str  # "query", "path" or "header"
    schema: JSONSchema = attrs.field(factory=lambda: dict(STRING))
    description: str = ""
    required: bool = False


@attrs.frozen(kw_only=True)
class Body:
    """A request body: its schema, media type and whether it may be left out.

    Attributes:
        schema: The body's JSON Schema.
        media_type: Its media type.
        required: Whether the route needs one (an empty body or JSON ``null`` counts as none).
        description: More, where it helps.
        limit: The most bytes of a JSON body the route reads (413 above it).
        checked: Whether the router reads a JSON body and checks that it is an object (present
            when required) before the handler runs; ``False`` for a route that reads its body
            itself (with its own limits and wording).
    """

    schema: JSONSchema
    media_type: str = "application/json"
    required: bool = True
    description: str = ""
    limit: int = DEFAULT_JSON_LIMIT
    checked: bool = True


@attrs.frozen(kw_only=True)
class Response:
    """A success response: status, body (``None``: no body) and extra headers."""

    status: int = 200
    description: str = "OK"
    schema: JSONSchema | None = None
    media_type: str = "application/json"
    headers: Mapping[str, JSONSchema] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Operation:
    """One route: what it takes and answers.

    Attributes:
        method: The HTTP method.
        path: The path as registered, without ``/api`` for API routes (``/v1/files``).
        scope: ``read``, ``write``, ``admin``, or :data:`~labric.server.core.routing.PUBLIC`.
        storage: A storage route (outside ``/api``; authorised by its URL signature).
        summary: One line.
        description: More, where it helps.
        params: Query, path and header parameters (path parameters are found in ``path`` and
            need listing only to describe them).
        body: The request body, if the route reads one.
        responses: The success responses (several for e.g. 200 / 206 / 304).
        errors: Route-specific error statuses -> when they happen (the shared ones are added).
        error_schemas: A status whose body is not ``{"detail": str}`` -> its schema.
        paginated: A listing that links its next page with ``Link``.
        hosted: The hosted platform has this route (else it is a local addition).
        tag: The tag, when not the family's.
    """

    method: str
    path: str
    scope: str
    storage: bool = False
    summary: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: Body | None = None
    responses: tuple[Response, ...] = (Response(),)
    errors: Mapping[int, str] = attrs.field(factory=dict)
    error_schemas: Mapping[int, JSONSchema] = attrs.field(factory=dict)
    paginated: bool = False
    hosted: bool = False
    tag: str | None = None

    @property
    def full_path(self) -> str:
        """The path the server serves (``/api/v1/files``, ``/storage/v1/...``)."""
        return self.path if self.storage else API_PREFIX + self.path

    @property
    def pattern(self) -> str:
        """The path as the router matches it: a path parameter declared with an anchored
        ``pattern`` (``^[0-9]{1,9}$``) matches only that (``{number:[0-9]{1,9}}``)."""
        patterns = {
            p.name: p.schema["pattern"][1:-1]
            for p in self.params
            if p.where == "path" and _ANCHORED.fullmatch(p.schema.get("pattern", ""))
        }
        return re.sub(
            r"{([^}]+)}",
            lambda m: f"{{{m[1]}:{patterns[m[1]]}}}" if m[1] in patterns else m[0],
            self.full_path,
        )

    @property
    def operation_id(self) -> str:
        """``get_files_file_id``: the method and the path's words."""
        words = [w.strip("{}") for w in self.path.split("/") if w and w != "v1"]
        return "_".join([self.method.lower(), *words]).replace("-", "_").replace(".", "_")


@attrs.frozen(kw_only=True)
class Family:
    """One block of the document: a tag and its component schemas (its operations are declared
    with their handlers and name the family when registered)."""

    tag: str
    description: str
    schemas: Mapping[str, JSONSchema] = attrs.field(factory=dict)


# -- parameters used by several families -------------------------------------------------------

LIMIT = Param(
    name="limit",
    where="query",
    schema=integer(minimum=1),
    description="The most items in total (the hosted meaning); without page_size or cursor "
    "the answer is every match up to it, in one array",
)
PAGE_SIZE = Param(
    name="page_size",
    where="query",
    schema=integer(minimum=1),
    description="Items per page (capped by the server): asks for a paged answer whose Link "
    "names the next page",
)
CURSOR = Param(
    name="cursor",
    where="query",
    schema=string(maxLength=1024),
    description="Where the page starts: pass back the one from the previous page's Link",
)
PAGE = (LIMIT, PAGE_SIZE, CURSOR)
#: A boolean in a query string (any case; empty means not given).
QUERY_BOOLEAN = string(enum=["true", "false", "1", "0", "yes", "no", ""])


def path_param(name: str, description: str, **schema: Any) -> Param:
    """A path parameter (always required)."""
    return Param(
        name=name, where="path", schema=string(**schema), description=description, required=True
    )


FILE_ID = path_param("file_id", "The file")
EXECUTION_ID = path_param("execution_id", "The job execution")
JOB_ID = path_param("job_id", "The job")

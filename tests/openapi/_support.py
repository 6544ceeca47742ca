"""Helpers of the OpenAPI suite: the server's registered routes, and validating bodies against
the document's schemas."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs

from labric.server import LocalServer
from labric.server.core.routing import ROUTE_ALIASES, ROUTE_SCOPES

Route = tuple[str, str]  # (METHOD, path template as the document writes it)


def registered(server: LocalServer, *, aliases: bool = False) -> dict[Route, str]:
    """Every route the running server registered -> its scope.

    The unversioned aliases (``/api/files`` of ``/api/v1/files``), which the document leaves
    out, only with ``aliases=True``.
    """
    app = server._runner.app  # type: ignore[union-attr]  # the registry lives on the app
    found: dict[Route, str] = {}
    for route, scope in app[ROUTE_SCOPES].items():
        assert route.resource is not None
        if route in app[ROUTE_ALIASES] and not aliases:
            continue
        # aiohttp's canonical form keeps a parameter's regex out: {number}, not {number:...}
        template = re.sub(r"{([^}:]+):[^}]*}", r"{\1}", route.resource.canonical)
        found[(route.method, template)] = scope
    return found


def documented(doc: dict[str, Any]) -> dict[Route, dict[str, Any]]:
    """Every operation of the document, by (METHOD, path)."""
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A 2020-12 validator of ``schema``, whose ``$ref`` s resolve into ``doc``'s components."""
    return jsonschema_rs.Draft202012Validator(
        {**schema, "components": doc["components"]}, validate_formats=True
    )


def response_schema(
    doc: dict[str, Any], method: str, path: str, status: int, media_type: str = "application/json"
) -> dict[str, Any]:
    """The documented schema of one response (fails when the status is not documented)."""
    op = documented(doc)[(method, path)]
    responses = op["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    content = responses[str(status)].get("content", {})
    assert media_type in content, f"{method} {path} {status} documents no {media_type} body"
    schema: dict[str, Any] = content[media_type]["schema"]
    return schema

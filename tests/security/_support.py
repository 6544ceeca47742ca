"""Helpers of the security suite: the server's route registry, raw sockets, stand-in servers and a
scanner for secrets in text.

Everything here talks to real sockets on 127.0.0.1. Stand-in handlers that must hang wait on
``StandIn.released``, which teardown sets, so a stand-in always shuts down promptly.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import re
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import attrs
import yarl
from aiohttp import web
from multidict import CIMultiDict

from labric.server import LocalServer
from labric.server.core.routing import API_PREFIX, PUBLIC, ROUTE_ALIASES, ROUTE_SCOPES

KiB = 1024
MiB = 1024 * KiB
SIGNATURE_PARAM = "X-Labric-Signature"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- the route registry ---------------------------------------------------------------------


@attrs.frozen
class Route:
    """One registered route: its method, path template and declared scope.

    An unversioned alias (``/api/files``) is a route of its own here, so every check runs
    against it too; ``versioned`` names the ``/api/v1`` route it repeats (else its own path).
    """

    method: str
    template: str
    scope: str
    params: tuple[str, ...]
    versioned: str = ""

    @property
    def is_alias(self) -> bool:
        """An unversioned alias of a ``/api/v1`` route."""
        return bool(self.versioned) and self.versioned != self.template

    @property
    def is_api(self) -> bool:
        """Under ``/api`` (the storage routes are not)."""
        return self.template.startswith(API_PREFIX + "/")

    @property
    def needs_key(self) -> bool:
        """Whether the route takes an API key (device pairing and storage routes do not)."""
        return self.scope != PUBLIC

    @property
    def takes_id(self) -> bool:
        return bool(self.params)

    def path(self, value: str | None = None, **values: str) -> str:
        """The path with every parameter filled (``values`` by name, else ``value``, else a
        random id), relative to the API prefix for API routes (``/v1/...``)."""
        filled = self.template
        for name in self.params:
            filled = filled.replace(
                "{" + name + "}", values.get(name, value or f"missing-{uuid.uuid4().hex}")
            )
        if self.is_api:
            return filled[len(API_PREFIX) :]
        return filled

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def routes(server: LocalServer) -> list[Route]:
    """Every route the running server registered, with its scope (API and storage)."""
    app = server._runner.app  # type: ignore[union-attr]  # the registry lives on the app
    found = []
    for route, scope in app[ROUTE_SCOPES].items():
        template = route.resource.canonical if route.resource is not None else ""
        params = tuple(re.findall(r"{([^}:]+)(?::[^}]*)?}", template))
        versioned = app[ROUTE_ALIASES].get(route, template)
        found.append(Route(route.method, template, scope, params, versioned))
    return found


def api_routes(server: LocalServer) -> list[Route]:
    """Every API route (under ``/api``, with a key or public)."""
    return [r for r in routes(server) if r.is_api]


def keyed_routes(server: LocalServer) -> list[Route]:
    """Every API route that takes a key."""
    return [r for r in api_routes(server) if r.needs_key]


# -- raw HTTP -------------------------------------------------------------------------------


@attrs.frozen
class RawReply:
    """A response read off a raw socket."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


async def read_reply(reader: asyncio.StreamReader, *, to_head: bool = False) -> RawReply:
    """Read one HTTP/1.1 response (Content-Length, chunked, or until the server closes).

    A response to ``HEAD`` (``to_head``) and a 1xx, 204 or 304 response have no body whatever
    their headers say (RFC 9112, section 6.3): reading on would wait for bytes that never come.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    if to_head or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "Content-Length" in headers:
        body = await reader.readexactly(int(headers["Content-Length"]))
    elif headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.read()
    return RawReply(status, headers, body)


def request_head(
    method: str, path: str, headers: Mapping[str, str] | None = None, *, host: str = "127.0.0.1"
) -> bytes:
    """A request line and headers, ending with the blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> RawReply:
    """Send raw bytes on a fresh connection and read one response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await read_reply(reader, to_head=data.startswith(b"HEAD "))
    finally:
        writer.close()
        await writer.wait_closed()


async def closed_by_peer(reader: asyncio.StreamReader, *, within: float) -> bytes:
    """Wait until the server closes the connection (EOF); return what it sent meanwhile.

    Raises:
        TimeoutError: the connection was still open after ``within`` seconds.
    """
    received = b""
    async with asyncio.timeout(within):
        while True:
            try:
                chunk = await reader.read(64 * KiB)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


# -- stand-in servers -----------------------------------------------------------------------


@attrs.frozen
class Seen:
    """One request as a stand-in received it."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes


class StandIn:
    """An aiohttp.web app on 127.0.0.1:0 answering what a test tells it to, recording requests."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=0.5, access_log=None
        )
        self.handlers: dict[tuple[str, str], Handler] = {}
        self.requests: list[Seen] = []
        self.released = asyncio.Event()
        self.hanging = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> StandIn:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.released.set()
        await self.runner.cleanup()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api"

    def on(self, method: str, path: str, handler: Handler | web.StreamResponse) -> None:
        """Serve ``method path`` with a handler, or with a canned response every time."""
        if isinstance(handler, web.StreamResponse):
            canned = handler

            async def fixed(_request: web.Request) -> web.StreamResponse:
                return _copy(canned)

            handler = fixed
        self.handlers[(method.upper(), path)] = handler

    async def hang(self, _request: web.Request) -> web.StreamResponse:
        """A handler that never answers (until teardown); sets :attr:`hanging` once entered."""
        self.hanging.set()
        await self.released.wait()
        return web.Response(status=503)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Seen(
                method=request.method,
                path=request.path,
                raw_path=request.raw_path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=body,
            )
        )
        handler = self.handlers.get((request.method, request.path))
        if handler is None:
            return web.json_response({"detail": f"no route {request.path}"}, status=404)
        return await handler(request)


def _copy(response: web.StreamResponse) -> web.Response:
    assert isinstance(response, web.Response)
    return web.Response(
        status=response.status, body=response.body, headers=CIMultiDict(response.headers)
    )


_HOP_BY_HOP = ("Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "TE")


class RecordingProxy:
    """A reverse proxy in front of a local server that records every request it forwards.

    The ``Host`` header is passed through, so the server signs storage URLs for the proxy's own
    origin and storage requests come through the proxy too: it sees everything a client sends.
    """

    def __init__(self, target: LocalServer) -> None:
        self._target = target
        self.app = web.Application(client_max_size=64 * MiB)
        self.app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=0.5, access_log=None
        )
        self.requests: list[Seen] = []
        self.port = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RecordingProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
        if self._session is not None:
            await self._session.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def storage_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith("/storage/")]

    def signatures(self) -> set[str]:
        """Every signature value that went through the proxy."""
        found = set()
        for seen in self.requests:
            for name, value in parse_qsl(urlsplit(seen.raw_path).query):
                if name == SIGNATURE_PARAM:
                    found.add(value)
        return found

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        self.requests.append(
            Seen(
                method=request.method,
                path=request.path,
                raw_path=request.raw_path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=body,
            )
        )
        headers = CIMultiDict(request.headers)
        for name in _HOP_BY_HOP:
            headers.popall(name, None)
        url = yarl.URL(self._target.origin + request.raw_path, encoded=True)
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            out = CIMultiDict(upstream.headers)
            for name in _HOP_BY_HOP:
                out.popall(name, None)
            return web.Response(status=upstream.status, body=payload, headers=out)


# -- secrets --------------------------------------------------------------------------------

#: Text that must never appear: a signature parameter, a 64-hex value (an HMAC-SHA256 signature)
#: and a whole API key (``lbk_<prefix>_<secret>``; the redacted form ends in an ellipsis).
_PATTERNS = (
    re.compile(SIGNATURE_PARAM + r"=[^&\s'\"]+", re.IGNORECASE),
    re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])"),
    re.compile(r"lbk_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}"),
)


def key_secret(key: str) -> str:
    """The secret part of ``lbk_<prefix>_<secret>``."""
    return key.split("_", 2)[2]


class SecretScanner:
    """Collects text a user could see and reports every secret found in it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = {s for s in secrets if s}
        self.texts: list[tuple[str, str]] = []

    def add_secret(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def add_repr(self, where: str, obj: object) -> None:
        self.add(f"repr({where})", repr(obj))
        self.add(f"str({where})", str(obj))

    def add_exception(self, where: str, exc: BaseException) -> None:
        """The exception's message, repr, formatted traceback (causes and notes included) and,
        for status errors, what the server said."""
        self.add(f"str({where})", str(exc))
        self.add(f"repr({where})", repr(exc))
        self.add(f"traceback({where})", "".join(traceback.format_exception(exc)))
        for attr in ("detail", "body", "path", "headers"):
            if hasattr(exc, attr):
                self.add(f"{where}.{attr}", repr(getattr(exc, attr)))

    def add_logs(self, records: Iterable[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in records:
            self.add(f"log[{record.name}]", formatter.format(record))

    def findings(self) -> list[str]:
        found = []
        for where, text in self.texts:
            for secret in self.secrets:
                if secret in text:
                    found.append(f"{where}: contains the secret {secret[:6]}…")
            for pattern in _PATTERNS:
                match = pattern.search(text)
                if match:
                    found.append(f"{where}: matches {pattern.pattern!r}: {match.group(0)[:24]}…")
        return found

"""Helpers for the core tests: scripted aiohttp.web servers on 127.0.0.1.

``api`` and ``storage`` are real HTTP servers on ephemeral ports. A test scripts them by adding
handlers per method and path (``api.on("GET", "/api/v1/files", handler)``) or a queue of canned
responses (``api.script(...)``); every request is recorded (method, path, query, headers, body,
arrival time, client port) before its handler runs. Handlers that must hang wait on
``server.released``, which teardown sets, so the servers always shut down promptly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
from aiohttp import web
from multidict import CIMultiDict

from labric import AsyncLabric, RetryPolicy

KEY = "lbk_test1234_s3cretValueThatMustNeverLeak"
SECRET = "s3cretValueThatMustNeverLeak"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The ``make_client`` fixture: ``make_client(**AsyncLabric kwargs) -> AsyncLabric``.
MakeClient = Callable[..., AsyncLabric]

#: Retries with delays of a few milliseconds, so retry tests stay fast but really sleep.
FAST_RETRY = RetryPolicy(max_retries=2, initial_delay=0.002, max_delay=0.01, max_server_delay=1.0)


@attrs.frozen
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    at: float
    peer_port: int | None

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class ScriptedServer:
    """An aiohttp.web app on 127.0.0.1:0 whose routes a test defines as it goes."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.5)
        self.handlers: dict[tuple[str, str], Handler] = {}
        self.requests: list[Seen] = []
        self.released = asyncio.Event()
        self.port = 0

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        self.released.set()
        await self.runner.cleanup()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL (requests go to ``{base_url}/v1/...``)."""
        return f"{self.origin}/api"

    def on(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` with ``handler`` (replacing any earlier one)."""
        self.handlers[(method.upper(), path)] = handler

    def script(self, method: str, path: str, responses: Iterable[Handler | web.Response]) -> None:
        """Answer successive requests with these responses (or handlers), in order."""
        queue = list(responses)

        async def next_response(request: web.Request) -> web.StreamResponse:
            if not queue:
                return web.json_response({"detail": "script exhausted"}, status=599)
            item = queue.pop(0)
            if isinstance(item, web.StreamResponse):
                return item
            return await item(request)

        self.on(method, path, next_response)

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDict(request.headers),
                body=body,
                at=asyncio.get_running_loop().time(),
                peer_port=peer[1] if peer else None,
            )
        )
        handler = self.handlers.get((request.method, request.path))
        if handler is None:
            return web.json_response({"detail": f"no route {request.path}"}, status=404)
        return await handler(request)


def json_response(data: Any, *, status: int = 200, **headers: str) -> web.Response:
    """A JSON response with extra headers (underscores in names become dashes)."""
    return web.json_response(
        data, status=status, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )

"""Ids in URL paths, as a real server receives them: one percent-escaped segment, whatever the id.

``test_request_shapes`` sees only the URL handed to aiohttp. Here the client talks to an
aiohttp server on 127.0.0.1 whose router is the real thing: the test records the request target
as it arrived (``raw_path``), the route that answered, and the id the router decoded. An id must
come back as itself, through the route it was meant for, with no query string, never as a path
that climbs (``..``), another route, or a query. ``.`` and ``..`` themselves cannot be one
segment (servers and proxies normalise them, escaped or not), so they never leave the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import attrs
import pytest
from aiohttp import web

from labric import AsyncLabric
from labric.errors import UsageError

from ._support import KEY

IDS = [
    "../admin",
    "../../v1/admin/stats",
    "a/b",
    "x?y=1",
    "frag#1",
    "%2e%2e",
    "%2e%2e%2fadmin",
    "..%2fadmin",
    "%2F",
    "a b",
    "ünï/..",
    "ℌ\u202e",
    "..\\admin",
    ";x=1",
]


@attrs.define
class Arrived:
    route: str
    file_id: str | None
    raw_path: str
    query: str


@attrs.define
class Server:
    base_url: str
    arrived: list[Arrived]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    arrived: list[Arrived] = []

    def record(route: str, answer: Callable[[str], web.StreamResponse]) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            file_id = request.match_info.get("file_id")
            arrived.append(Arrived(route, file_id, request.raw_path, request.query_string))
            return answer(file_id or "")

        return handler

    def info(file_id: str) -> web.StreamResponse:
        return web.json_response({"file_id": file_id, "original_path": "a.csv"})

    def content(file_id: str) -> web.StreamResponse:
        return web.json_response(
            {"file_id": file_id, "download_url": "http://127.0.0.1:9/x", "preview_truncated": False}
        )

    def elsewhere(_: str) -> web.StreamResponse:
        return web.json_response({"detail": "not the route the client meant"}, status=418)

    app = web.Application()
    app.router.add_get("/api/v1/files/{file_id}", record("file", info))
    app.router.add_delete("/api/v1/files/{file_id}", record("delete", lambda _: web.Response()))
    app.router.add_get("/api/v1/files/{file_id}/content", record("content", content))
    app.router.add_route("*", "/{tail:.*}", record("elsewhere", elsewhere))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield Server(f"http://127.0.0.1:{port}/api", arrived)
    finally:
        await runner.cleanup()


Call = Callable[[AsyncLabric, str], Awaitable[object]]
CALLS: dict[str, tuple[Call, str, str]] = {
    "files.get": (lambda c, i: c.files.get(i), "file", ""),
    "files.content": (lambda c, i: c.files.content(i), "content", "/content"),
    "files.delete": (lambda c, i: c.files.delete(i), "delete", ""),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("file_id", IDS)
async def test_an_id_reaches_the_server_as_one_escaped_segment(
    server: Server, file_id: str, call: str
) -> None:
    invoke, route, suffix = CALLS[call]
    async with AsyncLabric(KEY, base_url=server.base_url, max_retries=0) as client:
        await invoke(client, file_id)
    [seen] = server.arrived
    assert seen.route == route, seen
    assert seen.file_id == file_id, seen
    assert seen.query == "", seen
    # On the wire: /api/v1/files/<one segment><suffix>, the segment escaped so that neither a
    # "/" nor a "%" of the id survives to be read as structure or decoded twice.
    assert seen.raw_path.startswith("/api/v1/files/"), seen
    assert seen.raw_path.endswith(suffix), seen
    segment = seen.raw_path[len("/api/v1/files/") : len(seen.raw_path) - len(suffix)]
    assert not {"/", "?", "#"} & set(segment), seen
    assert unquote(segment) == file_id, seen


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("file_id", [".", ".."])
async def test_a_dot_segment_id_never_leaves_the_client(
    server: Server, file_id: str, call: str
) -> None:
    invoke, _, _ = CALLS[call]
    async with AsyncLabric(KEY, base_url=server.base_url, max_retries=0) as client:
        with pytest.raises(UsageError, match="cannot be sent in a URL path"):
            await invoke(client, file_id)
    assert server.arrived == []

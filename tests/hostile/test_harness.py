"""The hostile server itself: routes match, requests are recorded, unknown routes answer 404."""

from __future__ import annotations

import pytest
from aiohttp import web

from labric.errors import NotFoundError

from ._server import HostileServer, file_info


async def test_a_registered_route_answers_and_is_recorded(hostile: HostileServer) -> None:
    @hostile.route("GET", "/api/v1/files/{file_id}")
    async def get(request: web.Request) -> web.StreamResponse:
        return web.json_response(file_info(request.match_info["file_id"], "run/a.csv", size=3))

    async with hostile.client(max_retries=0) as client:
        info = await client.files.get("f-1")
        assert info.file_id == "f-1"
        assert info.size_bytes == 3
    assert [r.path for r in hostile.seen("GET")] == ["/api/v1/files/f-1"]
    assert "authorization" in {k.lower() for k in hostile.requests[0].headers}


async def test_an_unknown_route_is_a_404(hostile: HostileServer) -> None:
    async with hostile.client(max_retries=0) as client:
        with pytest.raises(NotFoundError, match="no route"):
            await client.files.get("nope")

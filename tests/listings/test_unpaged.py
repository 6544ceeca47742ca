"""Hosted answers for clients that do not page; pages for those that ask (design.md 3.1).

A list request with neither ``page_size`` nor ``cursor`` gets every match up to ``limit`` as one
JSON array and no ``Link``; one with either gets a page and a ``Link`` carrying the limit left.
The server here reads in batches of 7 (its ``max_page_size``), so a whole answer spans many.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from benchmarks.listing import seed_files
from labric import AsyncLabric
from labric.server import LocalServer
from labric.server.core.paging import Listing, respond

FILES = 260
BATCH = 7


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[LocalServer]:
    """A server holding :data:`FILES` confirmed files, reading at most :data:`BATCH` at once."""
    data_dir = tmp_path / "server"
    async with LocalServer(data_dir) as server:
        org_id = server.default_org_id
    seed_files(data_dir / "labric.db", org_id, FILES)
    async with LocalServer(data_dir, default_page_size=5, max_page_size=BATCH) as server:
        yield server


@pytest.fixture
async def http(seeded: LocalServer) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {seeded.admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


def _next(response: aiohttp.ClientResponse) -> str | None:
    link = response.headers.get("Link")
    return link[1 : link.index(">")] if link else None


async def _all_ids(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(url) as response:
        assert response.status == 200
        return [f["file_id"] for f in await response.json()]


async def test_files_without_paging_params_come_whole(
    seeded: LocalServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(seeded.base_url + "/v1/files") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert "Link" not in response.headers
        files = await response.json()
    assert len(files) == FILES
    assert len({f["file_id"] for f in files}) == FILES
    stamps = [f["file_created_at"] for f in files]
    assert stamps == sorted(stamps, reverse=True)  # newest first


async def test_limit_caps_the_whole_answer(
    seeded: LocalServer, http: aiohttp.ClientSession
) -> None:
    everything = await _all_ids(http, seeded.base_url + "/v1/files")
    async with http.get(seeded.base_url + "/v1/files", params={"limit": "120"}) as response:
        assert "Link" not in response.headers
        assert [f["file_id"] for f in await response.json()] == everything[:120]
    # A filter applies before the limit, across batches.
    async with http.get(
        seeded.base_url + "/v1/files", params={"limit": "30", "query": "read-00001"}
    ) as response:
        files = await response.json()
    assert [f["original_path"].rsplit("/", 1)[1] for f in files] == [
        f"read-{i:07d}.csv" for i in range(199, 169, -1)
    ]


async def test_page_size_pages_with_links_carrying_the_limit_left(
    seeded: LocalServer, http: aiohttp.ClientSession
) -> None:
    everything = await _all_ids(http, seeded.base_url + "/v1/files")
    url: str | None = seeded.base_url + "/v1/files?page_size=100&limit=250"
    sizes: list[int] = []
    seen: list[str] = []
    while url is not None:
        async with http.get(url) as response:
            page = [f["file_id"] for f in await response.json()]
            url = _next(response)
        sizes.append(len(page))
        seen += page
    assert sizes == [BATCH] * 35 + [5]  # page_size is capped by the server's maximum
    assert seen == everything[:250]
    async with http.get(seeded.base_url + "/v1/files", params={"cursor": ""}) as response:
        assert len(await response.json()) == 5  # the server's default page size
        assert "limit=" not in (_next(response) or "limit=")


async def test_every_listing_answers_whole_without_paging_params(
    seeded: LocalServer, http: aiohttp.ClientSession
) -> None:
    base = seeded.base_url
    for n in range(12):
        for path, body in (
            ("/v1/instruments", {"name": f"inst {n}"}),
            ("/v1/experiments", {"name": f"exp {n}"}),
            ("/v1/dashboards", {"name": f"board {n}", "widgets": []}),
            ("/v1/jobs", {"name": f"job {n}", "code": "print(1)\n"}),
        ):
            async with http.post(base + path, json=body) as response:
                assert response.status in (200, 201), await response.text()
    for path in ("/v1/instruments", "/v1/experiments", "/v1/dashboards", "/v1/jobs"):
        async with http.get(base + path) as response:
            assert "Link" not in response.headers, path
            assert len(await response.json()) == 12, path
        async with http.get(base + path, params={"limit": "9"}) as response:
            assert len(await response.json()) == 9, path
        async with http.get(base + path, params={"page_size": "4"}) as response:
            assert len(await response.json()) == 4, path
            assert _next(response) is not None, path


async def test_tools_read_returns_every_row_without_page_fields(
    seeded: LocalServer, http: aiohttp.ClientSession
) -> None:
    base = seeded.base_url
    table = {"name": "wells", "columns": [{"name": "n", "type": "integer"}]}
    async with http.post(base + "/v1/datasets", json=table) as response:
        assert response.status == 201, await response.text()
    rows = [{"n": i} for i in range(252)]
    async with http.post(
        base + "/v1/data/write", json={"tables": [{"table": "wells", "rows": rows}]}
    ) as response:
        assert response.status == 200, await response.text()
    read = {"target_name": "wells", "target_type": "table"}
    async with http.post(base + "/v1/tools/read", json=read) as response:
        assert "Link" not in response.headers
        assert [r["n"] for r in await response.json()] == list(range(252))
    async with http.post(base + "/v1/tools/read", json={**read, "limit": 120}) as response:
        assert "Link" not in response.headers
        assert [r["n"] for r in await response.json()] == list(range(120))
    async with http.post(base + "/v1/tools/read", json={**read, "page_size": 5}) as response:
        assert [r["n"] for r in await response.json()] == list(range(5))
        assert _next(response) is not None


async def test_the_sdk_pages_every_listing(seeded: LocalServer) -> None:
    async with AsyncLabric(seeded.admin_key, base_url=seeded.base_url) as client:
        pages = [len(page) async for page in client.files.list().pages()]
        assert sum(pages) == FILES
        assert max(pages) == BATCH  # pages, not one whole answer
        assert len([f async for f in client.files.list(limit=120)]) == 120


# -- the streaming writer ---------------------------------------------------------------------


async def test_a_whole_answer_streams_batch_by_batch() -> None:
    """The client reads the first batches while the server has not read the last one: the
    answer is written as it is read, never built whole."""
    total, batch = 50_000, 1000
    calls: list[tuple[int | None, int]] = []
    first_bytes_read = asyncio.Event()

    async def fetch(after: int | None, n: int) -> list[tuple[int, Any]]:
        calls.append((after, n))
        start = 0 if after is None else after + 1
        if start >= total // 2:
            await first_bytes_read.wait()  # held until the client has seen the first batches
        return [(i, {"n": i}) for i in range(start, min(start + n, total))]

    async def handler(request: web.Request) -> web.StreamResponse:
        wanted: Listing[int] = Listing(
            paged=False, limit=None, page_size=batch, after=None, encode=str
        )
        return await respond(request, wanted, fetch)

    app = web.Application()
    app.router.add_get("/items", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            asyncio.timeout(60),
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/items") as response,
        ):
            assert response.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in response.headers
            head = await response.content.readexactly(100_000)
            assert head.startswith(b'[{"n":0},{"n":1},')
            assert len(calls) <= total // batch // 2 + 1
            first_bytes_read.set()
            body = head + await response.read()
        items = json.loads(body)
        assert [i["n"] for i in items] == list(range(total))
        assert all(n == batch for _, n in calls)
        assert len(calls) == total // batch + 1  # the last read finds nothing more
    finally:
        await runner.cleanup()

"""A pager never spins on a server's links: empty pages, loops, other origins, malformed links."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiohttp import web

from labric import AsyncLabric, Labric
from labric._core.pagination import MAX_EMPTY_PAGES
from labric.errors import APIResponseValidationError

from ._server import KEY, HostileServer, file_info


def _endless_empty_pages(hostile: HostileServer) -> None:
    counter = itertools.count()

    @hostile.route("GET", "/api/v1/files")
    async def files(request: web.Request) -> web.StreamResponse:
        # Empty, but always a fresh next link: an honest listing would end.
        link = f'<{hostile.base_url}/v1/files?cursor={next(counter)}>; rel="next"'
        return web.json_response([], headers={"Link": link})


async def test_endless_empty_pages_end_with_an_error(hostile: HostileServer) -> None:
    _endless_empty_pages(hostile)
    async with hostile.client(max_retries=0) as client:
        with pytest.raises(APIResponseValidationError, match="empty pages in a row"):
            async for _ in client.files.list(limit=1):
                pass
    # The first page plus MAX_EMPTY_PAGES more; the link after those is not followed.
    assert len(hostile.seen("GET", "/api/v1/files")) == MAX_EMPTY_PAGES + 1


async def test_endless_empty_pages_end_the_sync_pager_too(hostile: HostileServer) -> None:
    _endless_empty_pages(hostile)

    def consume() -> None:
        with Labric(KEY, base_url=hostile.base_url, max_retries=0) as client:
            for _ in client.files.list(limit=1):
                pass

    with pytest.raises(APIResponseValidationError, match="empty pages in a row"):
        await asyncio.to_thread(consume)
    assert len(hostile.seen("GET", "/api/v1/files")) == MAX_EMPTY_PAGES + 1


async def test_a_few_empty_pages_are_skipped(hostile: HostileServer) -> None:
    @hostile.route("GET", "/api/v1/files")
    async def files(request: web.Request) -> web.StreamResponse:
        page = int(request.query.get("page", "0"))
        if page == MAX_EMPTY_PAGES + 1:
            return web.json_response([file_info("f-last", "a.csv")])
        link = f'<{hostile.base_url}/v1/files?page={page + 1}>; rel="next"'
        items = [file_info("f-first", "a.csv")] if page == 0 else []
        return web.json_response(items, headers={"Link": link})

    async with hostile.client(max_retries=0) as client:
        ids = [f.file_id async for f in client.files.list()]
    assert ids == ["f-first", "f-last"]


async def test_a_next_link_back_to_a_page_already_fetched_is_refused(
    hostile: HostileServer,
) -> None:
    @hostile.route("GET", "/api/v1/files")
    async def files(request: web.Request) -> web.StreamResponse:
        page = int(request.query.get("page", "0"))
        target = 1 if page == 2 else page + 1  # 0 -> 1 -> 2 -> 1 -> ...
        link = f'<{hostile.base_url}/v1/files?page={target}>; rel="next"'
        return web.json_response([file_info(f"f{page}", "a.csv")], headers={"Link": link})

    seen: list[str] = []

    async def collect(client: AsyncLabric) -> None:
        async for f in client.files.list():
            seen.append(f.file_id)

    async with hostile.client(max_retries=0) as client:
        with pytest.raises(APIResponseValidationError, match="repeats a page"):
            await collect(client)
    assert seen == ["f0", "f1", "f2"]


@pytest.mark.parametrize(
    "target",
    [
        "http://attacker.example/v1/files?page=2",
        "https://127.0.0.1:{port}/api/v1/files?page=2",  # same host, another scheme
        "http://127.0.0.1:1/api/v1/files?page=2",  # same host, another port
        "//attacker.example/v1/files",  # scheme-relative
        "file:///etc/passwd",
    ],
)
async def test_a_next_link_to_another_origin_is_never_followed(
    hostile: HostileServer, target: str
) -> None:
    @hostile.route("GET", "/api/v1/files")
    async def files(request: web.Request) -> web.StreamResponse:
        link = f'<{target.format(port=hostile.port)}>; rel="next"'
        return web.json_response([file_info("f1", "a.csv")], headers={"Link": link})

    async with hostile.client(max_retries=0) as client:
        with pytest.raises(APIResponseValidationError, match="another origin"):
            [f async for f in client.files.list()]
    assert len(hostile.requests) == 1  # nothing was sent anywhere else (nor here again)


@pytest.mark.parametrize(
    "link",
    [
        '<http://[::1/x>; rel="next"',
        '<http://127.0.0.1:notaport/x>; rel="next"',
        '<http://[zz::1]/x>; rel="next"',
    ],
)
async def test_a_malformed_link_is_a_labric_error(hostile: HostileServer, link: str) -> None:
    @hostile.route("GET", "/api/v1/files")
    async def files(request: web.Request) -> web.StreamResponse:
        return web.json_response([file_info("f1", "a.csv")], headers={"Link": link})

    async with hostile.client(max_retries=0) as client:
        with pytest.raises(APIResponseValidationError) as caught:
            [f async for f in client.files.list()]
        assert caught.value.path == "/api/v1/files"
        with pytest.raises(APIResponseValidationError):
            await client.files.list()

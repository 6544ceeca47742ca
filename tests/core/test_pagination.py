"""The pager, against a real paging server and against scripted page fetchers."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncPager, Page
from labric._core.pagination import DEFAULT_PAGE_SIZE
from labric.errors import APIResponseValidationError, NotFoundError
from labric.resources._base import AsyncResource

from ._support import MakeClient, ScriptedServer

TOTAL = 1000
DEFAULT_PAGE = 100


def serve_files(
    api: ScriptedServer,
    *,
    total: int = TOTAL,
    link: str = "path",
    honour_limit: bool = True,
    hold_from: int | None = None,
) -> dict[int, asyncio.Event]:
    """Serve ``GET /api/v1/files`` as the local server does (design.md 3.1): with ``page_size`` or
    ``cursor`` a page and a ``Link`` carrying the ``limit`` left; with neither, every item up to
    ``limit``. ``honour_limit=False``: a server that ignores every parameter (the hosted platform).

    Returns an event per cursor, set when the request for that page arrives. With ``hold_from``,
    requests for that cursor and later wait until the server is released.
    """
    arrived: dict[int, asyncio.Event] = {}

    async def handler(request: web.Request) -> web.Response:
        q = request.query
        paged = honour_limit and ("page_size" in q or "cursor" in q)
        most = int(q["limit"]) if honour_limit and "limit" in q else total
        size = min(int(q.get("page_size", DEFAULT_PAGE)), most) if paged else most
        cursor = int(q.get("cursor", 0))
        arrived.setdefault(cursor, asyncio.Event()).set()
        if hold_from is not None and cursor >= hold_from:
            await api.released.wait()
        items = [{"file_id": f"f{i:04d}"} for i in range(cursor, min(cursor + size, total))]
        headers = {}
        following = cursor + size
        if paged and following < total and most > len(items):
            rest = f"&limit={most - len(items)}" if "limit" in q else ""
            query = f"?page_size={q.get('page_size', DEFAULT_PAGE)}&cursor={following}{rest}"
            target = {
                "path": f"/api/v1/files{query}",
                "query": query,
                "absolute": f"{api.origin}/api/v1/files{query}",
            }[link]
            headers["Link"] = f'<{target}>; rel="next", </api/v1/files>; rel="first"'
        return web.json_response(items, headers=headers)

    api.on("GET", "/api/v1/files", handler)
    for cursor in range(0, total, DEFAULT_PAGE):
        arrived.setdefault(cursor, asyncio.Event())
    return arrived


def ids(items: list[Any]) -> list[str]:
    return [f.file_id for f in items]


def expected(start: int, stop: int) -> list[str]:
    return [f"f{i:04d}" for i in range(start, stop)]


# -- against a real server ------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["path", "query", "absolute"])
async def test_all_items_across_pages(
    api: ScriptedServer, make_client: MakeClient, link: str
) -> None:
    serve_files(api, link=link)
    client = make_client()
    items = [f async for f in client.files.list()]
    assert ids(items) == expected(0, TOTAL)
    assert len(api.requests) == 10
    assert api.requests[0].query == {"page_size": str(DEFAULT_PAGE_SIZE)}  # paged, no limit
    assert [r.query.get("cursor") for r in api.requests[1:]] == [
        str(c) for c in range(100, 1000, 100)
    ]


async def test_await_gives_the_first_page(api: ScriptedServer, make_client: MakeClient) -> None:
    serve_files(api)
    client = make_client()
    page = await client.files.list()
    assert isinstance(page, Page)
    assert ids(list(page)) == expected(0, 100)
    assert page.has_next
    assert len(page) == 100
    assert page[0].file_id == "f0000"
    assert ids(page[-2:]) == expected(98, 100)
    assert len(api.requests) == 1


async def test_limit_across_pages(api: ScriptedServer, make_client: MakeClient) -> None:
    serve_files(api)
    client = make_client()
    items = await client.files.list(limit=250, page_size=100).to_list()
    assert ids(items) == expected(0, 250)
    assert len(api.requests) == 3  # no request beyond the one that reaches the limit
    assert all(r.query["page_size"] == "100" for r in api.requests)
    assert [r.query["limit"] for r in api.requests] == ["250", "150", "50"]


async def test_limit_within_one_page(api: ScriptedServer, make_client: MakeClient) -> None:
    serve_files(api)
    client = make_client()
    assert ids(await client.files.list(limit=5).to_list()) == expected(0, 5)
    page = await client.files.list(limit=5)
    assert ids(list(page)) == expected(0, 5)
    assert not page.has_next
    assert [dict(r.query) for r in api.requests] == [{"page_size": "5", "limit": "5"}] * 2


async def test_limit_smaller_than_page_size(api: ScriptedServer, make_client: MakeClient) -> None:
    serve_files(api)
    client = make_client()
    assert ids(await client.files.list(limit=150, page_size=1000).to_list()) == expected(0, 150)
    assert [dict(r.query) for r in api.requests] == [{"page_size": "150", "limit": "150"}]


async def test_page_size_alone(api: ScriptedServer, make_client: MakeClient) -> None:
    serve_files(api)
    client = make_client()
    pages = [len(p) async for p in client.files.list(page_size=300).pages()]
    assert pages == [300, 300, 300, 100]
    assert all(r.query["page_size"] == "300" and "limit" not in r.query for r in api.requests)


async def test_limit_against_a_server_that_returns_everything(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    # The hosted platform today: one page, no Link, however many items.
    serve_files(api, honour_limit=False)
    client = make_client()
    assert ids(await client.files.list(limit=10).to_list()) == expected(0, 10)
    assert len(await client.files.list()) == TOTAL


async def test_pages_and_reiteration(api: ScriptedServer, make_client: MakeClient) -> None:
    serve_files(api)
    client = make_client()
    pager = client.files.list(page_size=250)
    first = [ids(list(p)) async for p in pager.pages()]
    second = [ids(list(p)) async for p in pager.pages()]
    assert first == second == [expected(i, i + 250) for i in range(0, 1000, 250)]
    assert len(api.requests) == 8


async def test_prefetch_is_at_most_one_page_ahead(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    arrived = serve_files(api)
    client = make_client()
    seen_at_page: list[int] = []
    async for page in client.files.list().pages():
        k = len(seen_at_page)
        seen_at_page.append(len(api.requests))
        if k == 0:
            # While the caller holds page 0, page 1 is fetched.
            await asyncio.wait_for(arrived[100].wait(), 5)
        assert len(api.requests) <= k + 2  # never two pages ahead
        assert len(page) == 100
    assert len(seen_at_page) == 10
    assert len(api.requests) == 10
    # Requests went out in order, each following the previous page's link.
    assert [int(r.query.get("cursor", 0)) for r in api.requests] == list(range(0, 1000, 100))


async def test_breaking_out_cancels_the_prefetch(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    arrived = serve_files(api, hold_from=100)  # page 1 never comes back
    api.on("GET", "/api/v1/files/f0001", lambda r: _file("f0001"))
    client = make_client(max_connections=1)
    async for f in client.files.list():
        assert f.file_id == "f0000"
        await asyncio.wait_for(arrived[100].wait(), 5)  # the prefetch holds the only connection
        break
    # The prefetch was cancelled, which gave its connection back: the next call gets through.
    assert (await asyncio.wait_for(client.files.get("f0001"), 5)).file_id == "f0001"


async def _file(file_id: str) -> web.Response:
    return web.json_response({"file_id": file_id})


async def test_error_on_a_later_page_surfaces_after_the_earlier_items(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def first(request: web.Request) -> web.Response:
        return web.json_response(
            [{"file_id": "a"}, {"file_id": "b"}], headers={"Link": '</api/v1/gone>; rel="next"'}
        )

    async def gone(request: web.Request) -> web.Response:
        return web.json_response({"detail": "cursor expired"}, status=404)

    api.on("GET", "/api/v1/files", first)
    api.on("GET", "/api/v1/gone", gone)
    client = make_client()
    items = aiter(client.files.list())
    assert [(await anext(items)).file_id for _ in range(2)] == ["a", "b"]
    with pytest.raises(NotFoundError, match="cursor expired"):
        await anext(items)


@pytest.mark.parametrize("foreign", ["storage", "http://evil.example:1/api/v1/files?cursor=2"])
async def test_next_link_to_another_host_is_refused(
    api: ScriptedServer, storage: ScriptedServer, make_client: MakeClient, foreign: str
) -> None:
    target = f"{storage.origin}/api/v1/files?cursor=2" if foreign == "storage" else foreign

    async def first(request: web.Request) -> web.Response:
        return web.json_response([{"file_id": "a"}], headers={"Link": f'<{target}>; rel="next"'})

    api.on("GET", "/api/v1/files", first)
    client = make_client()
    items = aiter(client.files.list())
    assert (await anext(items)).file_id == "a"
    with pytest.raises(APIResponseValidationError, match="another origin"):
        await anext(items)
    assert storage.requests == []


async def test_scheme_downgrade_in_a_link_is_refused(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def first(request: web.Request) -> web.Response:
        link = f'<https://127.0.0.1:{api.port}/api/v1/files?cursor=2>; rel="next"'
        return web.json_response([{"file_id": "a"}], headers={"Link": link})

    api.on("GET", "/api/v1/files", first)
    client = make_client()
    with pytest.raises(APIResponseValidationError):
        await client.files.list().to_list()


async def test_a_repeating_next_link_stops_instead_of_looping(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def same(request: web.Request) -> web.Response:
        link = '</api/v1/files?cursor=same>; rel="next"'
        return web.json_response([{"file_id": "a"}], headers={"Link": link})

    api.on("GET", "/api/v1/files", same)
    client = make_client()
    with pytest.raises(APIResponseValidationError, match="repeats"):
        await client.files.list().to_list()
    assert len(api.requests) == 2


async def test_empty_middle_pages_are_skipped(api: ScriptedServer, make_client: MakeClient) -> None:
    bodies = {"0": ["a"], "1": [], "2": ["b"]}

    async def handler(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor", "0")
        headers = {"Link": f'<?cursor={int(cursor) + 1}>; rel="next"'} if cursor != "2" else {}
        return web.json_response([{"file_id": x} for x in bodies[cursor]], headers=headers)

    api.on("GET", "/api/v1/files", handler)
    client = make_client()
    assert [len(p) async for p in client.files.list().pages()] == [1, 1]


async def test_a_page_that_is_not_json(api: ScriptedServer, make_client: MakeClient) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    api.on("GET", "/api/v1/files", html)
    client = make_client()
    with pytest.raises(APIResponseValidationError, match="not JSON") as info:
        await client.files.list()
    assert info.value.path == "/api/v1/files"


async def test_a_page_that_does_not_fit_the_model(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def wrong(request: web.Request) -> web.Response:
        return web.json_response(
            [{"file_id": "a"}, {"name": "no id"}], headers={"X-Request-ID": "r5"}
        )

    api.on("GET", "/api/v1/files", wrong)
    client = make_client()
    with pytest.raises(APIResponseValidationError, match=r"file_id") as info:
        await client.files.list()
    assert info.value.request_id == "r5"
    assert "GET /api/v1/files" in str(info.value)


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"page_size": 0}, {"limit": -1}])
async def test_sizes_must_be_positive(make_client: MakeClient, kwargs: dict[str, Any]) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="at least 1"):
        client.files.list(**kwargs)


async def test_a_post_listing_sends_its_body_to_every_page(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    async def rows(request: web.Request) -> web.Response:
        body = await request.json()
        cursor = int(request.query.get("cursor", 0))
        size = body["page_size"]
        data = [{"n": i} for i in range(cursor, min(cursor + size, 5))]
        headers = {"Link": f'<?cursor={cursor + size}>; rel="next"'} if cursor < 3 else {}
        return web.json_response({"rows": data}, headers=headers)

    api.on("POST", "/api/v1/tools/read", rows)
    client = make_client()
    resource = AsyncResource(client._transport)
    pager = resource._pager(
        "/v1/tools/read",
        dict,
        method="POST",
        json={"target_name": "t"},
        page_size=3,
        extract=lambda data: data["rows"],
    )
    assert [row["n"] async for row in pager] == [0, 1, 2, 3, 4]
    assert [r.json() for r in api.requests] == [{"target_name": "t", "page_size": 3}] * 2
    assert all("page_size" not in r.query for r in api.requests)


# -- against scripted fetchers (exact control of timing) ------------------------------------------


class Fetcher:
    """Pages ``a``..``e`` of two items each; every fetch waits until the test lets it finish."""

    def __init__(self, pages: int = 5) -> None:
        self.pages = pages
        self.calls: list[str | None] = []
        self.started: dict[int, asyncio.Event] = {n: asyncio.Event() for n in range(pages)}
        self.allowed: dict[int, asyncio.Event] = {n: asyncio.Event() for n in range(pages)}
        self.cancelled = asyncio.Event()
        self.tasks: dict[int, asyncio.Task[Any] | None] = {}

    def allow_all(self) -> None:
        for event in self.allowed.values():
            event.set()

    async def __call__(self, url: str | None) -> Page[str]:
        self.calls.append(url)
        n = 0 if url is None else int(url.rsplit("/", 1)[1])
        self.tasks[n] = asyncio.current_task()
        self.started[n].set()
        try:
            await self.allowed[n].wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        following = f"https://api.example/p/{n + 1}" if n + 1 < self.pages else None
        return Page([f"{n}a", f"{n}b"], following)


async def test_prefetch_starts_while_the_caller_holds_a_page() -> None:
    fetch = Fetcher()
    fetch.allowed[0].set()
    pages = AsyncPager(fetch).pages()
    first = await pages.__anext__()
    assert list(first) == ["0a", "0b"]
    await asyncio.wait_for(fetch.started[1].wait(), 5)
    fetch.allowed[1].set()
    fetch.allowed[2].set()
    # Page 1 is complete, but nothing beyond it is requested until the caller asks for page 1.
    assert fetch.calls == [None, "https://api.example/p/1"]
    assert list(await pages.__anext__()) == ["1a", "1b"]
    await asyncio.wait_for(fetch.started[2].wait(), 5)
    assert fetch.calls[-1] == "https://api.example/p/2"
    await pages.aclose()


async def test_break_cancels_the_prefetch_at_once() -> None:
    fetch = Fetcher()
    fetch.allowed[0].set()
    async for item in AsyncPager(fetch):
        assert item == "0a"
        await asyncio.wait_for(fetch.started[1].wait(), 5)
        break
    # The iterator is gone, and its prefetch was cancelled right then (not later, by the loop's
    # async-generator finalizer): no await has happened since the break.
    prefetch = fetch.tasks[1]
    assert prefetch is not None
    assert prefetch.cancelling() == 1
    await asyncio.wait_for(fetch.cancelled.wait(), 5)
    assert fetch.calls == [None, "https://api.example/p/1"]


async def test_break_out_of_pages_cancels_the_prefetch() -> None:
    fetch = Fetcher()
    fetch.allowed[0].set()
    async for _page in AsyncPager(fetch).pages():
        await asyncio.wait_for(fetch.started[1].wait(), 5)
        break
    prefetch = fetch.tasks[1]
    assert prefetch is not None
    assert prefetch.cancelling() == 1
    await asyncio.wait_for(fetch.cancelled.wait(), 5)


async def test_aclose_cancels_and_waits() -> None:
    fetch = Fetcher()
    fetch.allowed[0].set()
    items = aiter(AsyncPager(fetch))
    assert await anext(items) == "0a"
    await asyncio.wait_for(fetch.started[1].wait(), 5)
    await items.aclose()
    assert fetch.cancelled.is_set()
    with pytest.raises(StopAsyncIteration):
        await anext(items)
    await items.aclose()


async def test_a_failed_prefetch_the_caller_never_reaches_is_not_reported() -> None:
    started = asyncio.Event()

    async def fetch(url: str | None) -> Page[int]:
        if url is None:
            return Page([1, 2], "https://api.example/p/1")
        started.set()
        raise NotFoundError("gone", status_code=404)

    pages = AsyncPager(fetch).pages()
    assert list(await pages.__anext__()) == [1, 2]
    await asyncio.wait_for(started.wait(), 5)
    del pages
    gc.collect()  # no "Task exception was never retrieved" (filterwarnings=error would not see it)


async def test_cancelling_the_consumer_cancels_the_fetch() -> None:
    fetch = Fetcher()
    fetch.allowed[0].set()

    async def consume() -> list[str]:
        return [x async for x in AsyncPager(fetch)]

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(fetch.started[1].wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fetch.cancelled.is_set()


async def test_all_items_with_limit_from_fetcher() -> None:
    fetch = Fetcher()
    fetch.allow_all()
    assert await AsyncPager(fetch, limit=5).to_list() == ["0a", "0b", "1a", "1b", "2a"]
    assert len(fetch.calls) == 3
    assert await AsyncPager(fetch, limit=4).to_list() == ["0a", "0b", "1a", "1b"]
    assert await AsyncPager(fetch).to_list() == [f"{n}{x}" for n in range(5) for x in "ab"]
    assert repr(AsyncPager(fetch, limit=3)) == "<AsyncPager a listing limit=3: not fetched yet>"

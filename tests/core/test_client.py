"""AsyncLabric's lifecycle: opening, closing, misuse, event loops, and no leaked resources."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Iterator

import pytest
from aiohttp import web

from labric import AsyncLabric
from labric.errors import APIConnectionError, ClientClosedError, UsageError

from ._support import KEY, MakeClient, ScriptedServer


async def _file(request: web.Request) -> web.Response:
    return web.json_response({"file_id": request.match_info["tail"].rsplit("/", 1)[-1]})


@pytest.fixture
def files_route(api: ScriptedServer) -> ScriptedServer:
    for name in ("f1", "f2", "f3"):
        api.on("GET", f"/api/v1/files/{name}", _file)
    return api


async def test_async_with_opens_and_closes(files_route: ScriptedServer) -> None:
    async with AsyncLabric(KEY, base_url=files_route.base_url) as client:
        assert not client.is_closed
        assert (await client.files.get("f1")).file_id == "f1"
    assert client.is_closed
    assert "closed" in repr(client)


async def test_closing_twice_is_fine(make_client: MakeClient, files_route: ScriptedServer) -> None:
    client = make_client()
    await client.files.get("f1")
    await client.aclose()
    await client.aclose()
    assert client.is_closed


async def test_closing_an_unused_client(make_client: MakeClient) -> None:
    client = make_client()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.files.get("f1")


async def test_closed_client_raises_a_usage_error(
    make_client: MakeClient, files_route: ScriptedServer
) -> None:
    client = make_client()
    await client.files.get("f1")
    await client.aclose()
    with pytest.raises(ClientClosedError, match="closed") as info:
        await client.files.get("f1")
    assert isinstance(info.value, UsageError)
    with pytest.raises(ClientClosedError):
        await client.files.list()
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert len(files_route.requests) == 1


async def test_closing_while_a_request_is_in_flight(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    entered = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        entered.set()
        await api.released.wait()
        return web.json_response({"file_id": "x"})

    api.on("GET", "/api/v1/files/x", hold)
    client = make_client()
    call = asyncio.ensure_future(client.files.get("x"))
    await asyncio.wait_for(entered.wait(), 5)
    await client.aclose()
    # The dropped connection is not retried: the client is closed, which the error says.
    with pytest.raises(ClientClosedError, match="in flight") as info:
        await call
    assert isinstance(info.value.__cause__, APIConnectionError)


async def test_cancelled_request_leaves_the_client_usable(
    api: ScriptedServer, make_client: MakeClient
) -> None:
    entered = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        entered.set()
        await api.released.wait()
        return web.json_response({})

    api.on("GET", "/api/v1/slow", hold)
    api.on("GET", "/api/v1/files/f1", _file)
    client = make_client(max_connections=1)
    call = asyncio.ensure_future(client._transport.request("GET", "/v1/slow"))
    await asyncio.wait_for(entered.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The only pool slot was given back.
    assert (await asyncio.wait_for(client.files.get("f1"), 5)).file_id == "f1"


def _run_in_new_loop(coro_fn: object) -> BaseException | None:
    """Run ``coro_fn()`` with asyncio.run in a fresh thread; return what it raised."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            asyncio.run(coro_fn())  # type: ignore[operator]
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    return outcome[0]


async def test_second_event_loop_is_refused(
    make_client: MakeClient, files_route: ScriptedServer
) -> None:
    client = make_client()
    await client.files.get("f1")

    async def elsewhere() -> None:
        await client.files.get("f2")

    raised = await asyncio.to_thread(_run_in_new_loop, elsewhere)
    assert isinstance(raised, UsageError)
    assert "event loop" in str(raised)
    # Still fine in its own loop.
    assert (await client.files.get("f3")).file_id == "f3"
    assert [r.path for r in files_route.requests] == ["/api/v1/files/f1", "/api/v1/files/f3"]


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in another thread for the length of a test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def test_aclose_from_another_loop_closes_in_the_owning_loop(
    files_route: ScriptedServer, loop_thread: asyncio.AbstractEventLoop
) -> None:
    client = AsyncLabric(KEY, base_url=files_route.base_url)
    owned = asyncio.run_coroutine_threadsafe(client.files.get("f1"), loop_thread)
    assert (await asyncio.wrap_future(owned)).file_id == "f1"
    session = client._transport._session
    assert session is not None
    await client.aclose()  # from the test's loop, not the owner
    assert session.closed
    assert client.is_closed


async def test_aclose_after_the_owning_loop_is_gone(files_route: ScriptedServer) -> None:
    client = AsyncLabric(KEY, base_url=files_route.base_url)

    async def use() -> None:
        await client.files.get("f1")

    assert await asyncio.to_thread(_run_in_new_loop, use) is None
    with pytest.raises(UsageError):
        await client.files.get("f2")
    await client.aclose()  # nothing to await in a dead loop; must not warn or hang
    assert client.is_closed


def test_client_built_outside_a_loop_needs_no_closing() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = AsyncLabric(KEY)
        del client
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_no_unclosed_session_warnings(files_route: ScriptedServer) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with AsyncLabric(KEY, base_url=files_route.base_url) as client:
            await asyncio.gather(*(client.files.get(f"f{i}") for i in (1, 2, 3)))
        second = AsyncLabric(KEY, base_url=files_route.base_url)
        await second.files.get("f1")
        await second.aclose()
        del client, second
        gc.collect()
    assert [str(w.message) for w in caught] == []

"""The aioresponses compatibility shim (tests/_aioresponses_compat.py) itself."""

from __future__ import annotations

import aiohttp
import aioresponses.core as upstream_core
import pytest
from _aioresponses_compat import NEEDS_SHIM, CompatClientResponse, aioresponses
from aioresponses import CallbackResult
from aioresponses import aioresponses as upstream_aioresponses
from yarl import URL

URL_ = "https://mock.example/api/v1/ping"


async def test_shim_builds_canned_responses() -> None:
    with aioresponses() as mocked:
        mocked.get(URL_, status=418, payload={"detail": "teapot"}, headers={"X-Request-ID": "r1"})
        async with aiohttp.ClientSession() as session, session.get(URL_) as resp:
            assert isinstance(resp, CompatClientResponse)
            assert resp.status == 418
            assert resp.headers["X-Request-ID"] == "r1"
            assert await resp.json() == {"detail": "teapot"}


async def test_shim_builds_callback_responses() -> None:
    def answer(url: URL, **kwargs: object) -> CallbackResult:
        return CallbackResult(status=201, body=b"made", content_type="text/plain")

    with aioresponses() as mocked:
        mocked.post(URL_, callback=answer)
        async with aiohttp.ClientSession() as session, session.post(URL_, json={}) as resp:
            assert resp.status == 201
            assert await resp.read() == b"made"


async def test_shim_undoes_its_patch() -> None:
    original = upstream_core.ClientResponse
    with aioresponses():
        assert upstream_core.ClientResponse is CompatClientResponse
    assert upstream_core.ClientResponse is original is aiohttp.ClientResponse


async def test_upstream_still_needs_the_shim() -> None:
    """A canary: once an aioresponses release works on its own, the shim can be deleted."""
    if not NEEDS_SHIM:
        pytest.skip("this aiohttp does not need the shim")
    failure: TypeError | None = None
    with upstream_aioresponses() as mocked:
        mocked.get(URL_, payload={})
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(URL_) as resp:
                    await resp.read()
            except TypeError as exc:
                failure = exc
    if failure is None:
        pytest.skip(
            "aioresponses now works on this aiohttp without the shim: delete "
            "tests/_aioresponses_compat.py and import aioresponses directly"
        )
    assert "stream_writer" in str(failure)

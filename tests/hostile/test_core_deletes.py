"""Deletes are idempotent for the caller: a 404 on a retry after a lost answer is success."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric, RetryPolicy
from labric.errors import NotFoundError

from ._server import HostileServer

Call = Callable[[AsyncLabric], Awaitable[Any]]

DELETES: dict[str, tuple[str, Call]] = {
    "files": ("/api/v1/files/f1", lambda c: c.files.delete("f1")),
    "instruments": ("/api/v1/instruments/i1", lambda c: c.instruments.delete("i1", force=True)),
    "experiments": ("/api/v1/experiments/x1", lambda c: c.experiments.delete("x1")),
    "experiment file links": (
        "/api/v1/experiments/x1/files/f1",
        lambda c: c.experiments.unlink_file("x1", "f1"),
    ),
    "dashboards": ("/api/v1/dashboards/d1", lambda c: c.dashboards.delete("d1")),
}

#: Retries at once: these tests are about outcomes, not backoff.
NO_WAIT = RetryPolicy(max_retries=3, initial_delay=0, max_delay=0)


def _not_found() -> web.Response:
    return web.json_response({"detail": "Not found"}, status=404)


async def _applied_then_answer(request: web.Request, first: str) -> web.StreamResponse:
    """The first attempt is applied but its answer lost (``first``); later ones find nothing."""
    if first == "504":
        return web.json_response({"detail": "Gateway Timeout"}, status=504)
    if first == "503 twice":
        return web.json_response({"detail": "Service Unavailable"}, status=503)
    assert first == "connection lost"
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=204)


@pytest.mark.parametrize("first", ["504", "503 twice", "connection lost"])
@pytest.mark.parametrize("resource", list(DELETES))
async def test_a_404_after_an_unknown_outcome_is_success(
    hostile: HostileServer, resource: str, first: str
) -> None:
    path, call = DELETES[resource]
    lost = 2 if first == "503 twice" else 1

    @hostile.route("DELETE", path)
    async def delete(request: web.Request) -> web.StreamResponse:
        if len(hostile.seen("DELETE")) <= lost:
            return await _applied_then_answer(request, first)
        return _not_found()

    async with hostile.client(retry=NO_WAIT) as client:
        assert await call(client) is None
    assert len(hostile.seen("DELETE")) == lost + 1


@pytest.mark.parametrize("resource", list(DELETES))
async def test_a_404_on_the_first_attempt_is_not_found(
    hostile: HostileServer, resource: str
) -> None:
    path, call = DELETES[resource]

    @hostile.route("DELETE", path)
    async def delete(request: web.Request) -> web.StreamResponse:
        return _not_found()

    async with hostile.client(retry=NO_WAIT) as client:
        with pytest.raises(NotFoundError):
            await call(client)
    assert len(hostile.seen("DELETE")) == 1


async def test_a_404_after_a_refusal_that_applied_nothing_is_not_found(
    hostile: HostileServer,
) -> None:
    # A 429 says the server did not take the request on: the 404 after it is the truth.
    @hostile.route("DELETE", "/api/v1/files/f1")
    async def delete(request: web.Request) -> web.StreamResponse:
        if len(hostile.seen("DELETE")) == 1:
            return web.json_response({"detail": "slow down"}, status=429)
        return _not_found()

    async with hostile.client(retry=NO_WAIT) as client:
        with pytest.raises(NotFoundError):
            await client.files.delete("f1")
    assert len(hostile.seen("DELETE")) == 2


async def test_other_methods_keep_their_404(hostile: HostileServer) -> None:
    @hostile.route("GET", "/api/v1/files/f1")
    async def get(request: web.Request) -> web.StreamResponse:
        if len(hostile.seen("GET")) == 1:
            return web.json_response({"detail": "Gateway Timeout"}, status=504)
        return _not_found()

    async with hostile.client(retry=NO_WAIT) as client:
        with pytest.raises(NotFoundError):
            await client.files.get("f1")

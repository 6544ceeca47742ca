"""Test helpers shared across packages: a hand-driven clock, raw HTTP calls to a server, and the
fixtures of the instruments and experiments tests (a server on that clock, and an admin client).

The fixtures are imported by those packages' ``conftest.py`` files, which is how pytest shares
them without making them global; the jobs tests build on :class:`Wire` and :class:`FakeClock`.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from labric import AsyncLabric
from labric.server import LocalServer

#: A fixed start for hand-driven clocks (a whole second, so stored times are easy to read).
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


class FakeClock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stamp(ts: float) -> str:
    """A Unix time in the server's stored (and wire) form."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def at(ts: float) -> datetime:
    """A Unix time as the aware datetime the SDK's models hold."""
    return datetime.fromtimestamp(ts, tz=UTC)


@attrs.frozen
class Reply:
    """A fully read response."""

    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def detail(self) -> Any:
        return self.json()["detail"]


#: The default ``key`` of :meth:`Wire.call`: the server's admin key.
ADMIN: Any = object()


class Wire:
    """Calls a server's API over a real socket, without the SDK (and without retries)."""

    def __init__(self, session: aiohttp.ClientSession, server: LocalServer) -> None:
        self.session = session
        self.server = server

    async def call(
        self, method: str, path: str, *, key: str | None = ADMIN, **kwargs: Any
    ) -> Reply:
        key = self.server.admin_key if key is ADMIN else key
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        headers.update(kwargs.pop("headers", {}))
        url = path if path.startswith("http") else f"{self.server.base_url}{path}"
        async with self.session.request(method, url, headers=headers, **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.call("POST", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Reply:
        return await self.call("PATCH", path, **kw)

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        """Call and return the JSON body, asserting a 200."""
        reply = await self.call(method, path, **kw)
        assert reply.status == 200, reply.body
        return reply.json()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def server(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    """A server on the hand-driven clock, two items per page, running no jobs."""
    async with LocalServer(
        tmp_path / "server",
        clock=clock,
        default_page_size=2,
        max_concurrent_executions=0,
        schedule_interval=3600,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def wire(session: aiohttp.ClientSession, server: LocalServer) -> Wire:
    """Raw HTTP to the server, as its admin."""
    return Wire(session, server)


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncLabric]:
    """The admin's AsyncLabric (no retries, so a 409 answers at once)."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as c:
        yield c

"""Fixtures of the experiments tests: a server on a hand-driven clock, raw HTTP and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from labric import AsyncLabric
from labric.server import LocalServer

from ._support import FakeClock, Wire


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

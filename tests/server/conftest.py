"""Fixtures of the server tests: small-limit servers, a hand-driven clock, raw HTTP callers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from labric.server import LocalServer

from ._support import FakeClock, KiB, Wire


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def small(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    """A server with tiny limits (1 KiB parts, 64 KiB single PUTs, 8 KiB multipart bodies) and a
    hand-driven clock."""
    async with LocalServer(
        tmp_path / "small",
        part_size=KiB,
        max_single_put=64 * KiB,
        max_multipart_body=8 * KiB,
        default_page_size=3,
        clock=clock,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def wire(session: aiohttp.ClientSession, server: LocalServer) -> Wire:
    """Raw HTTP to the default ``server`` fixture, as its admin."""
    return Wire(session, server)


@pytest.fixture
def swire(session: aiohttp.ClientSession, small: LocalServer) -> Wire:
    """Raw HTTP to the ``small`` server, as its admin."""
    return Wire(session, small)


@pytest.fixture
def instrument(server: LocalServer) -> str:
    return server.create_instrument("Plate reader")


@pytest.fixture
def sinstrument(small: LocalServer) -> str:
    return small.create_instrument("Plate reader")

"""Fixtures of the dataset tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from labric.server import LocalServer

from ._support import Wire, create_tables


@pytest.fixture
async def wire(server: LocalServer) -> AsyncIterator[Wire]:
    """A raw caller with the server's admin key."""
    async with aiohttp.ClientSession() as session:
        yield Wire(session, server, server.admin_key)


@pytest.fixture
async def tables(wire: Wire) -> Wire:
    """``wire``, with the samples, measurements and readings (raw) tables created."""
    await create_tables(wire)
    return wire

"""Fixtures of the dashboard tests: a raw caller, and a table of samples to chart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from labric import AsyncLabric
from labric.server import LocalServer

from ._support import SAMPLES, Wire


@pytest.fixture
async def wire(server: LocalServer) -> AsyncIterator[Wire]:
    """A raw caller with the server's admin key."""
    async with aiohttp.ClientSession() as session:
        yield Wire(session, server, server.admin_key)


@pytest.fixture
async def samples(client: AsyncLabric) -> AsyncLabric:
    """``client``, with the ``samples`` table created and :data:`SAMPLES` written to it."""
    await client.datasets.create(
        "samples",
        columns=[
            {"name": "name", "type": "text", "nullable": False, "unique": True},
            {"name": "day", "type": "integer"},
            {"name": "od600", "type": "float"},
            {"name": "strain", "type": "text"},
            {"name": "ok", "type": "boolean"},
        ],
    )
    written = await client.datasets.write("samples", SAMPLES)
    assert written.created == len(SAMPLES)
    return client

"""Fixtures of the agent tests: a server with a seeded table, and clients with every scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric.server import LocalServer
from tests.hostile._server import HostileServer

#: Rows seeded into ``samples``.
SAMPLES = 37


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    async with LocalServer(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncLabric]:
    """The admin's client (read, write, admin), with a ``samples`` table of :data:`SAMPLES`
    rows."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as c:
        await c.datasets.create(
            "samples",
            columns=[
                {"name": "name", "type": "text", "nullable": False},
                {"name": "od600", "type": "float"},
            ],
        )
        rows = [{"name": f"S-{i:03d}", "od600": i / 10} for i in range(SAMPLES)]
        await c.datasets.write("samples", rows)
        yield c


@pytest.fixture
async def reader(server: LocalServer, client: AsyncLabric) -> AsyncIterator[AsyncLabric]:
    """A client whose key holds ``read`` only (the table is seeded by ``client``)."""
    key = server.create_key(["read"])
    async with AsyncLabric(key, base_url=server.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[HostileServer]:
    """A hostile server: each test chooses its answers."""
    srv = HostileServer(tmp_path)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()

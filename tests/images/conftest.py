"""Fixtures of the image annotation tests: a server on a hand-driven clock (so mask URLs can be
expired without waiting), an admin client, and an image stored on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _clocked import FakeClock, clock, session, wire
from _masks import image_png

from labric import AsyncLabric
from labric.server import LocalServer

__all__ = ["HEIGHT", "WIDTH", "client", "clock", "image_id", "server", "session", "wire"]

#: The size of the test image (and so of its masks).
WIDTH, HEIGHT = 40, 30


@pytest.fixture
async def server(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    async with LocalServer(
        tmp_path / "server", clock=clock, max_concurrent_executions=0, schedule_interval=3600
    ) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncLabric]:
    """The admin's AsyncLabric (no retries)."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
async def image_id(server: LocalServer, client: AsyncLabric) -> str:
    """A confirmed WIDTH x HEIGHT PNG on an instrument."""
    instrument = server.create_instrument("Microscope")
    up = await client.files.upload(
        image_png(WIDTH, HEIGHT), name="plates/p1.png", instrument_id=instrument
    )
    return str(up.file_id)

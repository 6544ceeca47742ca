"""Fixtures of the notifications tests: a server on a hand-driven clock with small caps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _clocked import FakeClock, clock, session, wire

from labric import AsyncLabric
from labric.server import LocalServer

__all__ = ["PER_DAY", "PER_HOUR", "client", "clock", "server", "session", "wire"]

#: Caps small enough to reach in a test.
PER_HOUR = 3
PER_DAY = 5


@pytest.fixture
async def server(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    """A server on the hand-driven clock, two items per page, with the caps above."""
    async with LocalServer(
        tmp_path / "server",
        clock=clock,
        default_page_size=2,
        max_concurrent_executions=0,
        schedule_interval=3600,
        notifications_per_hour=PER_HOUR,
        notifications_per_day=PER_DAY,
    ) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncLabric]:
    """The admin's AsyncLabric (no retries)."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as c:
        yield c

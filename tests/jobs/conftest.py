"""Fixtures of the jobs tests: servers with a hand-driven clock, with or without a job runner."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from labric import AsyncLabric
from labric.server import LocalServer

from ._support import FakeClock, Wire


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def runner(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    """A server that runs jobs (four at a time) on a hand-driven clock."""
    async with LocalServer(tmp_path / "runner", clock=clock, default_page_size=3) as srv:
        yield srv


@pytest.fixture
async def paused(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LocalServer]:
    """A server that queues executions but never starts them (no subprocesses), and checks
    schedules only when a test calls ``run_schedules()``."""
    async with LocalServer(
        tmp_path / "paused",
        clock=clock,
        max_concurrent_executions=0,
        default_page_size=3,
        schedule_interval=3600,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def wire(session: aiohttp.ClientSession, paused: LocalServer) -> Wire:
    """Raw HTTP to the ``paused`` server, as its admin."""
    return Wire(session, paused)


@pytest.fixture
async def pclient(paused: LocalServer) -> AsyncIterator[AsyncLabric]:
    """An AsyncLabric of the ``paused`` server (no retries, so a 409 answers at once)."""
    async with AsyncLabric(paused.admin_key, base_url=paused.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
async def rclient(runner: LocalServer) -> AsyncIterator[AsyncLabric]:
    """An AsyncLabric of the ``runner`` server."""
    async with AsyncLabric(runner.admin_key, base_url=runner.base_url, max_retries=0) as c:
        yield c

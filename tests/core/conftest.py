"""Fixtures for the core tests: scripted servers on 127.0.0.1 and clients bound to them.

See :mod:`._support` for how a test scripts a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from labric import AsyncLabric

from ._support import FAST_RETRY, KEY, MakeClient, ScriptedServer


@pytest.fixture
async def api() -> AsyncIterator[ScriptedServer]:
    """The scripted stand-in for the Labric API."""
    server = ScriptedServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def storage() -> AsyncIterator[ScriptedServer]:
    """A second server on another port, standing in for signed-URL storage."""
    server = ScriptedServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_client(api: ScriptedServer) -> AsyncIterator[MakeClient]:
    """Build clients bound to ``api`` (fast retries unless overridden); all closed at teardown."""
    made: list[AsyncLabric] = []

    def make(**kwargs: Any) -> AsyncLabric:
        kwargs.setdefault("base_url", api.base_url)
        kwargs.setdefault("retry", FAST_RETRY)
        client = AsyncLabric(KEY, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()

"""Shared fixtures: a real local Labric server on 127.0.0.1 and clients bound to it."""

from __future__ import annotations

import os

# Models reject unknown fields under test, so a model that drifts from the server is caught.
os.environ["LABRIC_STRICT_MODELS"] = "1"
# Tests never read a developer's real credentials.
os.environ.pop("LABRIC_API_KEY", None)
os.environ.pop("LABRIC_API_BASE_URL", None)

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric.server import LocalServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    """A fresh local server with its own data directory, on an ephemeral port."""
    async with LocalServer(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncLabric]:
    """An AsyncLabric with the server's admin key (read, write, admin)."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url) as c:
        yield c

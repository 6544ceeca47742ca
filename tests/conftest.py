"""Shared fixtures: a real local Labric server on 127.0.0.1 and clients bound to it."""

from __future__ import annotations

import os
import tempfile

# Models reject unknown fields under test, so a model that drifts from the server is caught.
os.environ["LABRIC_STRICT_MODELS"] = "1"
# Tests never read a developer's real credentials.
os.environ.pop("LABRIC_API_KEY", None)
os.environ.pop("LABRIC_API_BASE_URL", None)
os.environ.pop("LABRIC_JOB_EXECUTION_ID", None)
# Transfer journals default to the user's cache directory: keep the suite's out of it.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="labric-tests-cache-")

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from labric import AsyncLabric, TransferConfig
from labric.server import LocalServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    """A fresh local server with its own data directory, on an ephemeral port."""
    async with LocalServer(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer, tmp_path: Path) -> AsyncIterator[AsyncLabric]:
    """An AsyncLabric with the server's admin key (read, write, admin)."""
    transfer = TransferConfig(state_dir=str(tmp_path / "transfer-state"))
    async with AsyncLabric(server.admin_key, base_url=server.base_url, transfer=transfer) as c:
        yield c

"""The hostile server fixture: see ``_server.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ._server import HostileServer


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[HostileServer]:
    srv = HostileServer(tmp_path)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()

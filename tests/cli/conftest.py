"""Fixtures of the CLI tests: a real local server on its own thread, and the command's environment.

The server runs on a thread (not the test's event loop) because the command runs its own loop:
in-process through ``main([...])`` and, for the end-to-end cases, as a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labric.server import ThreadedServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedServer]:
    """A fresh local server on a thread, with its own data directory."""
    with ThreadedServer(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
def env(server: ThreadedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's credentials in the environment, as a user would set them."""
    values = {"LABRIC_API_KEY": server.admin_key, "LABRIC_API_BASE_URL": server.base_url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values

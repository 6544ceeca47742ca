"""Fixtures of the ML models tests: a server, a client without retries, and tables to train on.

Training runs on the server's training thread; tests wait for it with ``client.ml_models.wait``
(a held poll) or the runner's own ``wait``, and hold a run at a checkpoint with the runner's
``hold`` hook: never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labric import AsyncLabric
from labric.models import TableInfo
from labric.server import LocalServer
from labric.server.ml_models import ML_TRAINING
from labric.server.ml_models.runner import TrainingRunner

__all__ = ["client", "plants", "server", "training"]

pytest.importorskip("sklearn")


def training(server: LocalServer) -> TrainingRunner:
    """The server's training runner (its test hooks: ``hold``, ``wait``, ``stopped``)."""
    app = server._runner.app  # type: ignore[union-attr]
    return app[ML_TRAINING]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    async with LocalServer(tmp_path / "server", max_concurrent_executions=0) as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[AsyncLabric]:
    """The admin's AsyncLabric (no retries, so a 503 shows at once)."""
    async with AsyncLabric(server.admin_key, base_url=server.base_url, max_retries=0) as c:
        yield c


def plant_rows(n: int = 40) -> list[dict[str, Any]]:
    """Separable data: ``healthy`` is ``height >= 20``, ``yield_kg`` is ``3 * height + 2``,
    ``species`` follows ``height`` in thirds; ``colour`` is noise."""
    return [
        {
            "height": float(i),
            "colour": "green" if i % 2 else "brown",
            "healthy": i >= n // 2,
            "yield_kg": 3.0 * i + 2.0,
            "species": ("fern", "moss", "palm")[min(2, 3 * i // n)],
        }
        for i in range(n)
    ]


@pytest.fixture
async def plants(client: AsyncLabric) -> TableInfo:
    """A table of 40 plants (see :func:`plant_rows`)."""
    table = await client.datasets.create(
        "plants",
        columns=[
            {"name": "height", "type": "float"},
            {"name": "colour", "type": "text"},
            {"name": "healthy", "type": "boolean"},
            {"name": "yield_kg", "type": "float"},
            {"name": "species", "type": "text"},
        ],
    )
    await client.datasets.write("plants", plant_rows())
    return table

"""The SDK's pagers hold at most two pages whatever the listing's length: the one the caller is
reading and the one being fetched. Shown by the server's count of listing requests, which may
run at most one page ahead of the caller, for the async pager and the sync facade alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.listing import seed_files
from labric import AsyncLabric, Labric
from labric.server import LocalServer, ThreadedServer

FILES = 300
PAGE = 10
ROUTE = "GET /api/v1/files"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[ThreadedServer]:
    data_dir = tmp_path / "server"
    with LocalServer.run_in_thread(data_dir) as server:
        org_id = server.default_org_id
    seed_files(data_dir / "labric.db", org_id, FILES)
    with LocalServer.run_in_thread(data_dir) as server:
        yield server


def _requests(server: ThreadedServer) -> int:
    return int(server.stats["requests"]["by_route"].get(ROUTE, 0))


def test_the_sync_facade_runs_at_most_one_page_ahead(seeded: ThreadedServer) -> None:
    with Labric(seeded.admin_key, base_url=seeded.base_url) as client:
        seeded.reset_stats()
        for n, _ in enumerate(client.files.list(page_size=PAGE)):
            pages_reached = n // PAGE + 1
            assert _requests(seeded) <= pages_reached + 1
        assert n + 1 == FILES
        assert _requests(seeded) == FILES // PAGE


async def test_the_async_pager_runs_at_most_one_page_ahead(seeded: ThreadedServer) -> None:
    async with AsyncLabric(seeded.admin_key, base_url=seeded.base_url) as client:
        seeded.reset_stats()
        n = 0
        async for _ in client.files.list(page_size=PAGE):
            assert _requests(seeded) <= n // PAGE + 2
            n += 1
        assert n == FILES

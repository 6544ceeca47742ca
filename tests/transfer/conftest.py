"""Fixtures for transfer tests: a server with small parts, and a client tuned to match."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from labric import AsyncLabric, RetryPolicy, TransferConfig
from labric.server import LocalServer

KiB = 1024
PART = 256 * KiB


@pytest.fixture
async def parts_server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    """A server that offers parts for anything over 256 KiB."""
    async with LocalServer(tmp_path / "server", part_size=PART) as srv:
        yield srv


def make_client(server: LocalServer, state_dir: Path, **overrides: object) -> AsyncLabric:
    """A client whose multipart threshold and ranges match ``parts_server``, fast retries."""
    transfer = TransferConfig(
        part_size=PART,
        multipart_threshold=2 * PART,
        chunk_size=64 * KiB,
        concurrency=8,
        state_dir=str(state_dir),
    )
    retry = RetryPolicy(max_retries=8, initial_delay=0.001, max_delay=0.01, max_server_delay=0.01)
    return AsyncLabric(
        server.admin_key,
        base_url=server.base_url,
        transfer=transfer,
        retry=retry,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def tclient(parts_server: LocalServer, tmp_path: Path) -> AsyncIterator[AsyncLabric]:
    async with make_client(parts_server, tmp_path / "state") as client:
        yield client


@pytest.fixture
def make_file(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, size: int, *, folder: Path | None = None) -> Path:
        path = (folder or tmp_path / "src") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        return path

    return make


async def admin_call(
    server: LocalServer, method: str, path: str, json: object = None
) -> tuple[int, object]:
    """Call the API with the admin key, without the SDK."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            server.base_url + path,
            json=json,
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)

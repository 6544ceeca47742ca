"""Fixtures of the fsspec tests.

A blocking fsspec filesystem runs its coroutines on fsspec's own IO-loop thread and blocks the
calling thread meanwhile, so the server runs on a thread of its own (it cannot share the test's
loop). One server serves a whole module; each test works under a fresh top-level directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from labric import Labric
from labric.fsspec import LabricFileSystem
from labric.server import LocalServer, ThreadedServer


@pytest.fixture(scope="module")
def tserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path_factory.mktemp("fsspec") / "server") as srv:
        yield srv


@pytest.fixture
def options(tserver: ThreadedServer) -> dict[str, str]:
    """The storage options that name the threaded server (for pandas, Dask, fsspec.open)."""
    return {"api_key": tserver.admin_key, "base_url": tserver.base_url}


@pytest.fixture
def fs(options: dict[str, str]) -> Iterator[LabricFileSystem]:
    """The filesystem fsspec hands out for ``options`` (closed and uncached afterwards)."""
    filesystem = LabricFileSystem(**options)
    yield filesystem
    filesystem.close()
    LabricFileSystem.clear_instance_cache()


@pytest.fixture
def root() -> str:
    """A top-level directory of this test's own."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sdk(tserver: ThreadedServer) -> Iterator[Labric]:
    """The SDK's own client, to arrange files independently of the filesystem under test."""
    with Labric(tserver.admin_key, base_url=tserver.base_url) as client:
        yield client


@pytest.fixture
def upload(sdk: Labric) -> Callable[[str, bytes], str]:
    """Upload bytes under a platform path with the SDK; returns the file id."""

    def put(path: str, data: bytes) -> str:
        return sdk.files.upload(data, name=path).file_id

    return put

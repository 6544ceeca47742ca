"""Fixtures for the sync facade: the stub API and the real local server, each on a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import Labric
from labric.server import ThreadedServer

from ._support import KEY, StubAPI


@pytest.fixture(scope="session")
def stub_api() -> Iterator[StubAPI]:
    """The stub API, shared by the session (reset before each test)."""
    api = StubAPI()
    api.start()
    yield api
    api.stop()


@pytest.fixture
def stub(stub_api: StubAPI) -> StubAPI:
    stub_api.reset()
    return stub_api


@pytest.fixture
def client(stub: StubAPI) -> Iterator[Labric]:
    """A sync client of the stub API, closed at teardown."""
    with Labric(KEY, base_url=stub.base_url, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """The real local server on its own thread, shared by a test module."""
    data_dir: Path = tmp_path_factory.mktemp("sync-server")
    with ThreadedServer(data_dir) as server:
        yield server


@pytest.fixture
def local_client(local_server: ThreadedServer) -> Iterator[Labric]:
    """A sync client of the local server with its admin key, closed at teardown."""
    with Labric(local_server.admin_key, base_url=local_server.base_url) as c:
        yield c

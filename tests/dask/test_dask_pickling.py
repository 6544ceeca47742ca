"""What crosses to a Dask worker: clients and filesystems as configuration, errors whole, and
the shard plan of ``labric.dask``."""

from __future__ import annotations

import pickle

import multidict
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labric import AsyncLabric, Labric, TransferConfig
from labric import errors as E
from labric.dask import MAX_FILES_PER_TASK, _shard_sizes
from labric.server import LocalServer

KEY = "lbk_abc123_s3cr3tS3CR3Tvalue"
SECRET = "s3cr3tS3CR3Tvalue"


def test_an_async_client_pickles_as_its_configuration() -> None:
    transfer = TransferConfig(concurrency=3)
    client = AsyncLabric(KEY, base_url="http://127.0.0.1:9/api", transfer=transfer, max_retries=5)
    data = pickle.dumps(client)
    copy = pickle.loads(data)
    assert isinstance(copy, AsyncLabric)
    assert copy is not client
    assert copy.config == client.config
    assert copy._transport is not client._transport
    assert not copy.is_closed
    assert SECRET not in repr(copy)
    assert SECRET not in repr(copy.config)


def test_a_client_of_an_http_host_that_was_allowed_stays_allowed() -> None:
    client = AsyncLabric(KEY, base_url="http://lab.example/api", allow_insecure=True)
    assert pickle.loads(pickle.dumps(client)).base_url == "http://lab.example/api"


def test_a_blocking_client_pickles_and_the_copy_is_its_own() -> None:
    with Labric(KEY, base_url="http://127.0.0.1:9/api") as client:
        copy = pickle.loads(pickle.dumps(client))
        try:
            assert isinstance(copy, Labric)
            assert copy.config == client.config
            assert SECRET not in repr(copy)
        finally:
            copy.close()
        assert not client.is_closed  # closing the copy leaves the original open


async def test_a_used_client_pickles_and_the_copy_works(server: LocalServer) -> None:
    async with AsyncLabric(server.admin_key, base_url=server.base_url) as client:
        await client.files.list(limit=1)  # a live session exists now
        copy = pickle.loads(pickle.dumps(client))
    async with copy:
        uploaded = await copy.files.upload(b"through a pickle", name="p.txt")
        assert await copy.files.read_bytes(uploaded.file_id) == b"through a pickle"


@pytest.mark.parametrize(
    "error",
    [
        E.NotFoundError(
            "Not found",
            status_code=404,
            detail="gone",
            headers=multidict.CIMultiDictProxy(multidict.CIMultiDict({"X-Request-ID": "r1"})),
            method="GET",
            path="/v1/files/x",
            request_id="r1",
        ),
        E.InternalServerError("boom", status_code=503),
        E.APITimeoutError("slow", method="PUT", path="/storage"),
        E.ResponseTooLargeError("big", limit=10),
        E.UnsafeNameError("bad name", file_id="f1", name="../x"),
        E.WaitTimeoutError("waited", execution_id="e1", status="running"),
        E.IntegrityError("mismatch"),
        E.TransferError("failed"),
    ],
)
def test_errors_cross_processes_whole(error: E.LabricError) -> None:
    error.add_note("a note")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__notes__ == ["a note"]
    for name, value in vars(error).items():
        if name == "headers":
            assert dict(copy.headers) == dict(value)
            assert copy.headers.get("x-request-id") == value.get("x-request-id")
        else:
            assert getattr(copy, name) == value


@given(
    total=st.integers(0, 50_000),
    workers=st.integers(0, 64),
    per_task=st.one_of(st.none(), st.integers(1, 5_000)),
)
def test_shards_cover_the_input_in_order_evenly(
    total: int, workers: int, per_task: int | None
) -> None:
    sizes = _shard_sizes(total, workers, per_task)
    assert sum(sizes) == total
    assert all(size >= 1 for size in sizes)
    if sizes:
        assert max(sizes) - min(sizes) <= 1
        assert max(sizes) <= (per_task if per_task is not None else MAX_FILES_PER_TASK)


def test_files_per_task_must_be_positive() -> None:
    with pytest.raises(ValueError, match="files_per_task"):
        _shard_sizes(10, 2, 0)

"""Requests of a transfer retry transient failures until ``TransferConfig.retry_deadline``.

``max_retries`` bounds API calls; a transfer's requests keep retrying transient failures past it
until the deadline (counted from each request's first attempt). Other errors fail at once,
``retry_deadline=0`` falls back to ``max_retries``, and ``max_retries=0`` turns retries off.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labric import RetryPolicy, TransferConfig
from labric.errors import ConfigurationError, InternalServerError, PermissionDeniedError

from ._server import HostileServer, SinglePutUploads

FAST = RetryPolicy(initial_delay=0.001, max_delay=0.001)  # max_retries stays the default, 2


def _transfer(tmp_path: Path, **kwargs: float) -> TransferConfig:
    return TransferConfig(state_dir=str(tmp_path / "state"), **kwargs)  # type: ignore[arg-type]


async def test_a_transfer_retries_past_max_retries_until_it_goes_through(
    hostile: HostileServer, tmp_path: Path
) -> None:
    uploads = SinglePutUploads(hostile).install()
    uploads.put_failures = [503, 500, 429, 503, 502, 408]
    async with hostile.client(retry=FAST, transfer=_transfer(tmp_path)) as client:
        uploaded = await client.files.upload(b"abc", name="a.csv", job_execution_id="ex-1")
    assert uploaded.file_id in uploads.confirmed
    assert len(hostile.seen("PUT")) == 7
    assert client.stats.retries == 6


async def test_retries_past_max_retries_are_logged_against_the_deadline(
    hostile: HostileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uploads = SinglePutUploads(hostile).install()
    uploads.put_failures = [503, 503, 503]
    caplog.set_level("INFO", logger="labric")
    async with hostile.client(retry=FAST, transfer=_transfer(tmp_path)) as client:
        await client.files.upload(b"abc", name="a.csv", job_execution_id="ex-1")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Retrying PUT")]
    assert [line.rsplit("; ", 1)[1] for line in lines] == [
        "retry 1 of 2)",
        "retry 2 of 2)",
        "retry 3 within the 120 s transfer retry deadline)",
    ]


async def test_a_transfer_gives_up_at_its_deadline(hostile: HostileServer, tmp_path: Path) -> None:
    uploads = SinglePutUploads(hostile).install()
    uploads.put_failures = [503] * 10_000
    transfer = _transfer(tmp_path, retry_deadline=0.2)
    async with hostile.client(retry=FAST, transfer=transfer) as client:
        with pytest.raises(InternalServerError):
            await client.files.upload(b"abc", name="a.csv", job_execution_id="ex-1")
    assert len(hostile.seen("PUT")) >= 3  # at least max_retries, however fast the clock
    assert uploads.put_failures  # it stopped long before the server would have let it through
    assert uploads.confirmed == []


async def test_a_zero_deadline_leaves_transfers_at_max_retries(
    hostile: HostileServer, tmp_path: Path
) -> None:
    uploads = SinglePutUploads(hostile).install()
    uploads.put_failures = [503] * 5
    transfer = _transfer(tmp_path, retry_deadline=0)
    async with hostile.client(retry=FAST, transfer=transfer) as client:
        with pytest.raises(InternalServerError):
            await client.files.upload(b"abc", name="a.csv", job_execution_id="ex-1")
    assert len(hostile.seen("PUT")) == 3


async def test_no_retries_means_none_for_transfers_either(
    hostile: HostileServer, tmp_path: Path
) -> None:
    uploads = SinglePutUploads(hostile).install()
    uploads.put_failures = [503]
    async with hostile.client(max_retries=0, transfer=_transfer(tmp_path)) as client:
        with pytest.raises(InternalServerError):
            await client.files.upload(b"abc", name="a.csv", job_execution_id="ex-1")
    assert len(hostile.seen("PUT")) == 1


async def test_an_error_that_is_not_transient_fails_at_once(
    hostile: HostileServer, tmp_path: Path
) -> None:
    uploads = SinglePutUploads(hostile).install()
    uploads.put_failures = [403]
    async with hostile.client(retry=FAST, transfer=_transfer(tmp_path)) as client:
        with pytest.raises(PermissionDeniedError):
            await client.files.upload(b"abc", name="a.csv", job_execution_id="ex-1")
    assert len(hostile.seen("PUT")) == 1


def test_the_deadline_is_validated_and_defaults_to_two_minutes() -> None:
    assert TransferConfig().retry_deadline == 120.0
    with pytest.raises(ConfigurationError, match="retry_deadline"):
        TransferConfig(retry_deadline=-1)

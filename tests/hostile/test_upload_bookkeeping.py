"""A finished upload is never reported as failed because of bookkeeping around it.

Closing the job execution an upload call opened, the resume journal and the progress callback
can all fail after the server confirmed a file; the file is still returned (with a warning), and
when a file really failed its own error stays the one raised.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from labric import AsyncLabric, RetryPolicy
from labric._transfer.journal import Journal
from labric.errors import APIResponseValidationError, BadRequestError
from labric.models.transfers import TransferPhase, TransferProgress

from ._server import HostileServer, SinglePutUploads

FAST = RetryPolicy(max_retries=1, initial_delay=0.001, max_delay=0.001)


def _executions(hostile: HostileServer, *, close_status: int = 503) -> None:
    @hostile.route("POST", "/api/v1/job-executions")
    async def open_execution(request: web.Request) -> web.StreamResponse:
        return web.json_response({"job_execution_id": "ex-1"})

    @hostile.route("PATCH", "/api/v1/job-executions/{execution_id}")
    async def close_execution(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "unavailable"}, status=close_status)


def _client(hostile: HostileServer, **kwargs: Any) -> AsyncLabric:
    return hostile.client(retry=FAST, **kwargs)


async def test_upload_returns_its_file_when_closing_the_execution_fails(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    _executions(hostile)
    uploads = SinglePutUploads(hostile).install()
    async with _client(hostile) as client:
        with caplog.at_level(logging.WARNING, logger="labric"):
            uploaded = await client.files.upload(b"abc", name="a.csv")
    assert uploaded.file_id in uploads.confirmed
    assert len(hostile.seen("PATCH")) == 2  # tried, and retried
    assert any(
        "Closing job execution ex-1 as completed failed" in r.message for r in caplog.records
    )


async def test_upload_many_returns_outcomes_with_a_warning_when_closing_fails(
    hostile: HostileServer,
) -> None:
    _executions(hostile)
    uploads = SinglePutUploads(hostile).install()
    async with _client(hostile) as client:
        outcomes = await client.files.upload_many([("a.csv", b"a"), ("b.csv", b"b")])
    assert [o.ok for o in outcomes] == [True, True]
    assert len(uploads.confirmed) == 2
    for outcome in outcomes:
        assert len(outcome.warnings) == 1
        assert "Closing job execution ex-1 as completed failed" in outcome.warnings[0]


async def test_a_failed_file_stays_the_error_raised_and_the_close_failure_is_a_note(
    hostile: HostileServer, tmp_path: Path
) -> None:
    _executions(hostile)
    SinglePutUploads(hostile).install()
    async with _client(hostile) as client:
        with pytest.raises(FileNotFoundError) as caught:
            await client.files.upload_many(
                [("a.csv", b"a"), tmp_path / "missing.csv"], raise_on_error=True
            )
    notes = getattr(caught.value, "__notes__", [])
    assert any("Closing job execution ex-1 as failed failed" in n for n in notes)


async def test_a_failed_single_upload_keeps_its_error_when_closing_fails_too(
    hostile: HostileServer,
) -> None:
    _executions(hostile)

    @hostile.route("POST", "/api/v1/files/upload-url")
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "file_name is bad"}, status=400)

    async with _client(hostile) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.files.upload(b"abc", name="a.csv")
    notes = getattr(caught.value, "__notes__", [])
    assert any("Closing job execution ex-1 as failed failed" in n for n in notes)


@pytest.mark.parametrize(
    "answer", [{"job_execution_id": None}, {}, {"job_execution_id": 42}, ["ex-1"], {"x": ""}]
)
async def test_a_malformed_execution_answer_fails_before_anything_is_uploaded(
    hostile: HostileServer, answer: object
) -> None:
    @hostile.route("POST", "/api/v1/job-executions")
    async def open_execution(request: web.Request) -> web.StreamResponse:
        return web.json_response(answer)

    uploads = SinglePutUploads(hostile).install()
    async with _client(hostile) as client:
        with pytest.raises(APIResponseValidationError, match=r"job_execution_id|JSON object"):
            await client.files.upload(b"abc", name="a.csv")
        with pytest.raises(APIResponseValidationError):
            await client.files.upload_many([("a.csv", b"a")])
    assert uploads.names == {}
    assert hostile.seen("POST", "/api/v1/files") == []


async def test_a_journal_that_cannot_be_written_does_not_fail_an_upload(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = SinglePutUploads(hostile).install()
    source = tmp_path / "big.raw"
    source.write_bytes(b"x" * (512 * 1024))  # read by range, so journalled

    def disk_full(conn: sqlite3.Connection, changes: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Journal, "_commit", staticmethod(disk_full))
    async with _client(hostile) as client:
        outcomes = await client.files.upload_many([source], job_execution_id="ex-9")
    (outcome,) = outcomes
    assert outcome.ok, outcome.error
    assert outcome.file is not None
    assert outcome.file.file_id in uploads.confirmed
    assert any("resume journal could not be written" in w for w in outcome.warnings)


async def test_a_progress_callback_failing_after_confirm_does_not_fail_the_file(
    hostile: HostileServer,
) -> None:
    uploads = SinglePutUploads(hostile).install()

    def on_progress(event: TransferProgress) -> None:
        if event.phase is TransferPhase.COMPLETED:
            raise RuntimeError("the progress bar broke")

    async with _client(hostile) as client:
        outcomes = await client.files.upload_many(
            [("a.csv", b"a")], job_execution_id="ex-9", on_progress=on_progress
        )
        single = await client.files.upload(
            b"b", name="b.csv", job_execution_id="ex-9", on_progress=on_progress
        )
    (outcome,) = outcomes
    assert outcome.ok, outcome.error
    assert any("the progress bar broke" in w for w in outcome.warnings)
    assert single.file_id in uploads.confirmed


async def test_a_progress_callback_failing_before_confirm_is_the_files_error(
    hostile: HostileServer,
) -> None:
    uploads = SinglePutUploads(hostile).install()

    def on_progress(event: TransferProgress) -> None:
        if event.phase is TransferPhase.STARTED:
            raise RuntimeError("the progress bar broke")

    async with _client(hostile) as client:
        (outcome,) = await client.files.upload_many(
            [("a.csv", b"a")], job_execution_id="ex-9", on_progress=on_progress
        )
        with pytest.raises(RuntimeError, match="progress bar broke"):
            await client.files.upload(
                b"b", name="b.csv", job_execution_id="ex-9", on_progress=on_progress
            )
    assert isinstance(outcome.error, RuntimeError)
    assert uploads.confirmed == []

"""The progress renderer shared by ``labric demo`` and the CLI, and the CLI's error mapping."""

from __future__ import annotations

import io

import pytest

from labric.cli._common import bulk_exit_code, error_line, exit_code
from labric.cli.progress import ProgressBar, format_bytes
from labric.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
)
from labric.models import TransferPhase, TransferProgress

MiB = 1024 * 1024


def _event(
    phase: TransferPhase, done_files: int, done_bytes: int, *, files: int = 4, total: int = 8 * MiB
) -> TransferProgress:
    return TransferProgress(
        direction="upload",
        phase=phase,
        file="run/a.csv",
        bytes_done=done_bytes,
        bytes_total=total,
        total_bytes_done=done_bytes,
        total_bytes=total,
        files_done=done_files,
        files_total=files,
        rate=2 * MiB,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "101")


def test_plain_lines_are_throttled_and_the_last_is_always_drawn() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(out, tty=False, clock=clock)
    bar(_event(TransferPhase.STARTED, 0, 0))
    clock.now += 0.5
    bar(_event(TransferPhase.PROGRESS, 0, 1 * MiB))  # too soon: not drawn
    clock.now += 2.0
    bar(_event(TransferPhase.COMPLETED, 1, 2 * MiB))
    clock.now += 0.1
    bar(_event(TransferPhase.COMPLETED, 4, 8 * MiB))  # the final event, however soon
    assert out.getvalue().splitlines() == [
        "upload    0/4 files  0 B of 8.0 MiB  2.0 MiB/s",
        "upload    1/4 files  2.0 MiB of 8.0 MiB  2.0 MiB/s",
        "upload    4/4 files  8.0 MiB of 8.0 MiB  2.0 MiB/s",
    ]
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_one_redrawn_bar() -> None:
    out, clock = io.StringIO(), Clock()
    bar = ProgressBar(out, tty=True, clock=clock, label="sync")
    bar(_event(TransferPhase.PROGRESS, 1, 2 * MiB))
    clock.now += 1
    bar(_event(TransferPhase.COMPLETED, 4, 8 * MiB))
    text = out.getvalue()
    assert text.count("\r") == 2
    assert text.endswith("\n")
    assert text.count("\n") == 1
    first, second = text.split("\r")[1:]
    assert first.rstrip() == (
        "sync      [######------------------]  25%  1/4 files  2.0 MiB of 8.0 MiB  2.0 MiB/s"
    )
    assert second.startswith("sync      [########################] 100%  4/4 files")
    assert len(first) == 100  # padded to the terminal's width, less one column


def test_close_ends_a_half_drawn_line_once() -> None:
    out = io.StringIO()
    with ProgressBar(out, tty=True, clock=Clock()) as bar:
        bar(_event(TransferPhase.PROGRESS, 1, 2 * MiB))
    assert out.getvalue().endswith("\n")
    bar.close()
    assert out.getvalue().count("\n") == 1
    plain = io.StringIO()
    ProgressBar(plain, tty=False).close()
    assert plain.getvalue() == ""


def test_without_a_byte_total_the_bar_counts_files() -> None:
    event = TransferProgress(
        direction="download",
        phase=TransferPhase.COMPLETED,
        file="x",
        bytes_done=10,
        bytes_total=None,
        total_bytes_done=10,
        total_bytes=None,
        files_done=1,
        files_total=2,
        rate=10.0,
    )
    line = ProgressBar(io.StringIO(), tty=True).render(event)
    assert line == "download  [############------------]  50%  1/2 files  10 B  10 B/s"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * MiB, "5.0 MiB"),
        (3 * 1024 * MiB, "3.0 GiB"),
        (5000 * 1024 * MiB, "5000.0 GiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def _status(cls: type[Exception], status: int) -> Exception:
    return cls("boom", status_code=status, method="GET", path="/api/v1/x")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("no key"), 3),
        (_status(AuthenticationError, 401), 3),
        (_status(PermissionDeniedError, 403), 3),
        (_status(NotFoundError, 404), 4),
        (FileNotFoundError(2, "No such file or directory", "x.csv"), 4),
        (APIConnectionError("refused"), 5),
        (APITimeoutError("slow"), 5),
        (_status(ConflictError, 409), 1),
        (_status(InternalServerError, 500), 1),
        (IntegrityError("crc"), 1),
        (ValueError("odd"), 1),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def test_error_lines_are_one_line_and_say_what_to_check() -> None:
    assert error_line(FileNotFoundError(2, "No such file or directory", "x.csv")) == (
        "No such file or directory: x.csv"
    )
    assert error_line(ValueError("two\nlines")) == "two lines"
    assert error_line(_status(AuthenticationError, 401)).endswith("; check LABRIC_API_KEY")


def test_bulk_exit_code() -> None:
    assert bulk_exit_code([]) == 0
    assert bulk_exit_code([_status(NotFoundError, 404), _status(NotFoundError, 404)]) == 4
    assert bulk_exit_code([_status(NotFoundError, 404), IntegrityError("crc")]) == 1

"""Terminal rendering of transfer progress, shared by ``labric demo`` and the ``labric`` command.

:class:`ProgressBar` is an ``on_progress`` callback: it turns the transfer engine's typed
:class:`~labric.models.TransferProgress` events into one redrawn line on a terminal (a bar,
files and bytes done, throughput) and into plain, rate-limited lines when the stream is a pipe or
a file, so logs and CI output carry no carriage returns or escape codes. It needs nothing beyond
the standard library: the engine already aggregates bytes, files and rate, so rendering is a
matter of formatting one event.

Events arrive on the event loop's thread, many per second; redraws are throttled (10 per second
on a terminal, one line every few seconds otherwise), and the final event of a call is always
drawn. Call :meth:`ProgressBar.close` (or use it as a context manager) so an interrupted transfer
does not leave the cursor at the end of a half-drawn line.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from labric.models.transfers import TransferPhase, TransferProgress

__all__ = ["ProgressBar", "format_bytes"]

_TTY_INTERVAL = 0.1
_PLAIN_INTERVAL = 2.0
_BAR_WIDTH = 24


def format_bytes(n: float) -> str:
    """A byte count for people: ``512 B``, ``3.4 KiB``, ``12.0 MiB``, ``1.2 GiB``."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


class ProgressBar:
    """An ``on_progress`` callback that draws a transfer's progress on ``stream``.

    Args:
        stream: Where to draw (the CLI uses stderr, so stdout stays clean for output).
        tty: Whether to redraw one line in place; default: ``stream.isatty()``.
        label: Shown before the bar (default: the event's direction, ``upload``/``download``).
        clock: Monotonic seconds, for the redraw throttle (tests pass their own).

    Example::

        with ProgressBar(sys.stderr) as bar:
            await client.files.upload_many(["run42/"], on_progress=bar)
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        label: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.label = label
        self._clock = clock
        self._last: float | None = None
        self._open_line = False  # a redrawn line without its newline yet
        # Bytes of files skipped as unchanged: counted as done, but never sent, so no rate.
        self._skipped_bytes = 0

    def __call__(self, event: TransferProgress) -> None:
        if event.phase == TransferPhase.SKIPPED:
            self._skipped_bytes += event.bytes_total or event.bytes_done
        now = self._clock()
        final = event.files_done == event.files_total and event.phase != TransferPhase.PROGRESS
        interval = _TTY_INTERVAL if self.tty else _PLAIN_INTERVAL
        if not final and self._last is not None and now - self._last < interval:
            return
        self._last = now
        text = self.render(event)
        if self.tty:
            width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
            self.stream.write("\r" + text[:width].ljust(width))
            self._open_line = not final
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def render(self, event: TransferProgress) -> str:
        """The line for one event (without ``\\r`` or newline)."""
        label = f"{self.label or event.direction:9s}"
        total = event.total_bytes
        files = f"{event.files_done}/{event.files_total} files"
        done = format_bytes(event.total_bytes_done)
        size = f"{done} of {format_bytes(total)}" if total else done
        moved = event.total_bytes_done - self._skipped_bytes
        if not self._skipped_bytes:
            rate = f"  {format_bytes(event.rate)}/s"
        elif moved > 0:
            # The call's rate counts skipped files' bytes as done: scale it to the bytes sent.
            rate = f"  {format_bytes(event.rate * moved / event.total_bytes_done)}/s"
        else:
            rate = ""  # nothing sent (every file so far unchanged): there is no rate to show
        if not self.tty:
            return f"{label} {files}  {size}{rate}"
        if total:
            fraction = min(event.total_bytes_done / total, 1.0)
        else:
            fraction = event.files_done / event.files_total if event.files_total else 1.0
        filled = round(fraction * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        return f"{label} [{bar}] {fraction * 100:3.0f}%  {files}  {size}{rate}"

    def close(self) -> None:
        """End a half-drawn line (after an interruption), so the next output starts clean."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

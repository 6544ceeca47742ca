"""Progress: per-file events of one call, aggregated and rate-limited for its callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from labric.models.transfers import TransferPhase, TransferProgress

__all__ = ["ProgressCallback"]

ProgressCallback = Callable[[TransferProgress], Any]

_PROGRESS_INTERVAL = 0.2


class _Progress:
    """Aggregates per-file progress into events for one call; rate-limits ``progress`` events."""

    def __init__(
        self,
        direction: str,
        callback: ProgressCallback | None,
        files_total: int,
        total_bytes: int | None = None,
    ) -> None:
        self.direction = direction
        self.callback = callback
        self.files_total = files_total
        self.total_bytes = total_bytes
        self.total_done = 0
        self.files_done = 0
        self.started = time.monotonic()
        self._last: dict[str, float] = {}

    def _emit(self, phase: TransferPhase, file: str, done: int, total: int | None) -> None:
        if self.callback is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.callback(
            TransferProgress(
                direction=self.direction,
                phase=phase,
                file=file,
                bytes_done=done,
                bytes_total=total,
                total_bytes_done=self.total_done,
                total_bytes=self.total_bytes,
                files_done=self.files_done,
                files_total=self.files_total,
                rate=self.total_done / elapsed,
            )
        )

    def started_file(self, file: str, total: int | None) -> None:
        self._emit(TransferPhase.STARTED, file, 0, total)

    def advance(self, file: str, delta: int, done: int, total: int | None) -> None:
        self.total_done += delta
        if self.callback is None:
            return
        now = time.monotonic()
        if now - self._last.get(file, 0.0) >= _PROGRESS_INTERVAL:
            self._last[file] = now
            self._emit(TransferPhase.PROGRESS, file, done, total)

    def finished_file(self, phase: TransferPhase, file: str, done: int, total: int | None) -> None:
        self.files_done += 1
        self._last.pop(file, None)
        self._emit(phase, file, done, total)

"""What every handler shares: settings, the stores, the signer, the fault injector, counters.

One :class:`ServerState` exists per running server and is reachable from handlers as
``request.app[STATE]``. Everything in it is used from the server's event-loop thread, except
:class:`Stats` (read by other threads through ``LocalServer.stats``) and the stores, which hand
their blocking work to their own threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
from aiohttp import web

from labric.server.core.blobs import BlobStore
from labric.server.core.db import Database, iso
from labric.server.core.faults import FaultInjector
from labric.server.core.signing import URLSigner

__all__ = [
    "DEFAULT_NOTIFICATIONS_PER_DAY",
    "DEFAULT_NOTIFICATIONS_PER_HOUR",
    "DEFAULT_PART_SIZE",
    "MAX_MULTIPART_BODY",
    "MAX_SINGLE_PUT",
    "SEND_TIMEOUT",
    "STATE",
    "JobEvents",
    "KeyedLocks",
    "ServerState",
    "Settings",
    "Stats",
]

MiB = 1024 * 1024
#: Part size of multipart uploads unless the server is configured otherwise.
DEFAULT_PART_SIZE = 16 * MiB
#: The largest object a single signed PUT may store, and the confirm limit (hosted: 500 MB).
MAX_SINGLE_PUT = 500_000_000
#: The size range GCS-style upload URLs sign by default (500 MiB, as the hosted platform's).
SIGNED_LENGTH_RANGE = 524_288_000
#: The largest request body of ``POST /v1/files`` (the hosted edge's 4.5 MB).
MAX_MULTIPART_BODY = 4_500_000
#: Notifications an organisation may have delivered per sliding hour and day (hosted caps both).
DEFAULT_NOTIFICATIONS_PER_HOUR = 100
DEFAULT_NOTIFICATIONS_PER_DAY = 1000


@attrs.frozen(kw_only=True)
class Settings:
    """Limits and lifetimes of one server.

    Attributes:
        part_size: Size of each part of a multipart upload (all but the last).
        max_single_put: The largest object a single PUT may store and confirm may accept.
        max_multipart_body: The largest ``POST /v1/files`` body.
        upload_url_ttl: Seconds an upload URL (and its part URLs) stays valid.
        download_url_ttl: Seconds a download URL stays valid.
        default_page_size: Items per page of a paged listing whose request has no
            ``page_size``.
        max_page_size: The largest page a listing serves, and the batch in which a listing
            answered whole is read (see :mod:`labric.server.core.paging`).
        preview_bytes: How much of a file ``/content`` previews.
        max_concurrent_executions: Platform job executions running at once; the rest queue.
        job_timeout: Seconds a platform execution may run when neither the run nor its job says.
        max_log_bytes: The most output kept per execution (its first and last halves past this).
        schedule_interval: Seconds (real time) between checks for due job schedules.
        notifications_per_hour: Notifications an organisation may have delivered in any hour.
        notifications_per_day: Notifications an organisation may have delivered in any day.
    """

    part_size: int = DEFAULT_PART_SIZE
    max_single_put: int = MAX_SINGLE_PUT
    max_multipart_body: int = MAX_MULTIPART_BODY
    upload_url_ttl: float = 15 * 60
    download_url_ttl: float = 60 * 60
    default_page_size: int = 100
    max_page_size: int = 1000
    preview_bytes: int = 64 * 1024
    max_concurrent_executions: int = 4
    job_timeout: float = 15 * 60
    max_log_bytes: int = MiB
    schedule_interval: float = 1.0
    notifications_per_hour: int = DEFAULT_NOTIFICATIONS_PER_HOUR
    notifications_per_day: int = DEFAULT_NOTIFICATIONS_PER_DAY

    @property
    def signed_length_range(self) -> str:
        """The ``x-goog-content-length-range`` value upload URLs are signed with."""
        return f"0,{max(SIGNED_LENGTH_RANGE, self.max_single_put)}"


class Stats:
    """Counters of what the server did, for tests and benchmarks (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests = 0
            self._by_route: Counter[str] = Counter()
            self._by_status: Counter[int] = Counter()
            self._received = 0
            self._sent = 0
            self._received_by_file: Counter[str] = Counter()
            self._puts = 0
            self._part_puts = 0
            self._parts_by_file: dict[str, Counter[int]] = {}

    def request(self, route: str) -> None:
        """Count a request to ``route`` (``"METHOD /path/{template}"``)."""
        with self._lock:
            self._requests += 1
            self._by_route[route] += 1

    def status(self, status: int) -> None:
        """Count a response status."""
        with self._lock:
            self._by_status[status] += 1

    def received(self, file_id: str, nbytes: int) -> None:
        """Count bytes received by a storage PUT for a file."""
        with self._lock:
            self._received += nbytes
            self._received_by_file[file_id] += nbytes

    def sent(self, nbytes: int) -> None:
        """Count bytes sent by storage GETs."""
        with self._lock:
            self._sent += nbytes

    def put(self, file_id: str, part: int | None) -> None:
        """Count a storage PUT (of an object, or of part ``part``)."""
        with self._lock:
            if part is None:
                self._puts += 1
            else:
                self._part_puts += 1
                self._parts_by_file.setdefault(file_id, Counter())[part] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data (the body of ``GET /v1/admin/stats``, less ``faults``).

        ``requests.by_route`` is keyed ``"METHOD /path/{template}"``; ``requests.by_status`` by
        status, with ``"0"`` for requests whose connection was dropped before an answer.
        ``storage.bytes_received`` counts every body byte storage PUTs read (also of PUTs that
        then failed), so a resumed upload shows exactly what was sent again.
        """
        with self._lock:
            return {
                "requests": {
                    "total": self._requests,
                    "by_route": dict(self._by_route),
                    "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                },
                "storage": {
                    "bytes_received": self._received,
                    "bytes_sent": self._sent,
                    "bytes_received_by_file": dict(self._received_by_file),
                    "object_puts": self._puts,
                    "part_puts": self._part_puts,
                    "part_puts_by_file": {
                        file_id: {str(n): c for n, c in sorted(parts.items())}
                        for file_id, parts in self._parts_by_file.items()
                    },
                },
            }


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold the lock of ``key`` for the duration of the block."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class JobEvents(Protocol):
    """What handlers ask of the job runner (:class:`labric.server.jobs.runner.JobRunner`).

    Declared here rather than imported so that the shared state does not depend on the jobs
    package, which depends on it.
    """

    @property
    def stopping(self) -> bool:
        """The server is shutting down: no more executions start."""

    def wake(self) -> None:
        """Look for queued executions now."""

    async def file_confirmed(self, file_id: str, uploader_execution_id: str | None) -> list[str]:
        """Fire the triggers of a newly confirmed file; the executions it queued."""

    def watch(self, execution_id: str) -> asyncio.Future[None]:
        """A future resolved when the execution ends."""

    def unwatch(self, execution_id: str, future: asyncio.Future[None]) -> None:
        """Drop a future :meth:`watch` returned."""

    def notify(self, execution_id: str) -> None:
        """Resolve the watchers of an execution that ended."""

    def live_logs(self, execution_id: str) -> tuple[str, bool] | None:
        """A running execution's output so far and whether it was truncated."""


@attrs.define(kw_only=True)
class ServerState:
    """Everything the handlers of one server share."""

    settings: Settings
    db: Database
    blobs: BlobStore
    signer: URLSigner
    injector: FaultInjector
    stats: Stats
    clock: Callable[[], float]
    file_locks: KeyedLocks = attrs.field(factory=KeyedLocks)
    idempotency_locks: KeyedLocks = attrs.field(factory=KeyedLocks)
    #: The job runner (set by the server once it is built; ``None`` when jobs are not run).
    jobs: JobEvents | None = None
    #: The organisation created on the data directory's first start. Fault injection and the
    #: counters are server-wide, so only its admin keys may change them (``None``: any admin).
    operator_org_id: str | None = None

    def now(self) -> str:
        """The current time in the stored ISO form."""
        return iso(self.clock())


STATE = web.AppKey("labric_state", ServerState)
#: Seconds a download may wait for its client to take the next bytes before it is cut off.
SEND_TIMEOUT = web.AppKey("labric_send_timeout", float)

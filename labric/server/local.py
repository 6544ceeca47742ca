"""``LocalServer``: the local Labric server as an async context manager, and its threaded twin.

Lifecycle
    :meth:`LocalServer.start` takes the data directory's lock (one server per directory; see
    :mod:`labric.server.core.datadir`), opens (and migrates) the database on its own thread,
    initialises the data directory (secret, default organisation, admin key), empties ``tmp/``,
    removes blob files no record names (and forgets the parts of uploads whose file is gone),
    then binds the socket and serves, and starts the job runner (which first fails the job
    executions a previous process left unfinished). A start that fails removes what it
    initialised, so a busy port leaves no half-made data directory behind.
    :meth:`LocalServer.stop`
    stops the job runner (killing running job processes), stops accepting, gives in-flight
    requests a moment to finish, then closes the database and waits for disk threads.
    Restarting on the same data directory keeps organisations, keys, files and bytes; signed URLs
    stay valid (same secret) until they expire.

Threads
    The server runs on the event loop that starts it. SQLite work runs on one database thread,
    blob I/O on a small pool (see :mod:`labric.server.core.db` and :mod:`labric.server.core.blobs`).
    :class:`ThreadedServer` runs all of that on a private event loop in a daemon thread, for
    synchronous code and benchmarks; its helpers may be called from any thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from labric.server.console import CONSOLE
from labric.server.core import auth, records
from labric.server.core.app import DEFAULT_BODY_TIMEOUT, DEFAULT_IDLE_TIMEOUT, build_app
from labric.server.core.blobs import BlobStore, settle_unsynced_parts
from labric.server.core.datadir import DataDir, DataDirLock, DataDirNotInitialised, Identity
from labric.server.core.db import Database, iso
from labric.server.core.faults import FaultConfig, FaultInjector, parse_faults
from labric.server.core.idempotency import RETENTION_SECONDS
from labric.server.core.signing import URLSigner
from labric.server.core.state import (
    DEFAULT_NOTIFICATIONS_PER_DAY,
    DEFAULT_NOTIFICATIONS_PER_HOUR,
    DEFAULT_PART_SIZE,
    MAX_MULTIPART_BODY,
    MAX_SINGLE_PUT,
    ServerState,
    Settings,
    Stats,
)
from labric.server.images import store as images_store
from labric.server.jobs.runner import JobRunner

__all__ = ["LocalServer", "ThreadedServer"]

#: Seconds in-flight requests get to finish when the server stops.
SHUTDOWN_TIMEOUT = 2.0


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class LocalServer:
    """A local Labric server on a data directory.

    Use it as an async context manager::

        async with LocalServer("./labric-data") as server:
            async with AsyncLabric(server.admin_key, base_url=server.base_url) as client:
                ...

    Args:
        data_dir: Where metadata and bytes live (reused on restart).
        init: Initialise ``data_dir`` if it is not a data directory yet (creating it if
            missing); with ``False`` such a directory is refused with ``DataDirNotInitialised``.
        host: The interface to bind.
        port: The port to bind (0: any free port; see :attr:`port` once started).
        part_size: Part size of multipart uploads.
        faults: Fault injection from the start: a :class:`FaultConfig` or the CLI syntax
            (``"error=0.1,latency_ms=20,seed=7"``).
        max_single_put: The largest object a single signed PUT may store.
        max_multipart_body: The largest ``POST /v1/files`` request body.
        upload_url_ttl: Seconds upload URLs stay valid.
        download_url_ttl: Seconds download URLs stay valid.
        default_page_size: Page size of a paged listing whose request has no ``page_size``.
        max_page_size: The largest page a listing serves, and the batch in which a listing
            answered whole (a request without ``page_size`` or ``cursor``) is read.
        max_concurrent_executions: Platform job executions running at once (the rest queue).
        job_timeout: Default time limit of a platform job execution, in seconds.
        max_log_bytes: The most output kept per job execution.
        schedule_interval: Seconds between checks for due job schedules.
        notifications_per_hour: Notifications an organisation may have delivered in any hour
            (more are answered 429 with ``Retry-After``).
        notifications_per_day: The same, in any 24 hours.
        idle_timeout: Seconds an idle connection is kept open; a request's headers must also
            arrive within this time (slow clients are cut off; see :mod:`labric.server.core.app`).
        body_timeout: Seconds a request body may send nothing before its connection is closed.
        clock: Returns the current Unix time; inject one to expire URLs, keys and executions, and
            to make job schedules due, in tests without waiting (see :meth:`run_schedules`).
    """

    def __init__(
        self,
        data_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        init: bool = True,
        part_size: int = DEFAULT_PART_SIZE,
        faults: FaultConfig | str | None = None,
        max_single_put: int = MAX_SINGLE_PUT,
        max_multipart_body: int = MAX_MULTIPART_BODY,
        upload_url_ttl: float = 15 * 60,
        download_url_ttl: float = 60 * 60,
        default_page_size: int = 100,
        max_page_size: int = 1000,
        max_concurrent_executions: int = 4,
        job_timeout: float = 15 * 60,
        max_log_bytes: int = 1024 * 1024,
        schedule_interval: float = 1.0,
        notifications_per_hour: int = DEFAULT_NOTIFICATIONS_PER_HOUR,
        notifications_per_day: int = DEFAULT_NOTIFICATIONS_PER_DAY,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if part_size < 1:
            raise ValueError("part_size must be at least 1 byte")
        if notifications_per_hour < 1 or notifications_per_day < 1:
            raise ValueError("notifications_per_hour and notifications_per_day must be at least 1")
        self.data_dir = DataDir(data_dir)
        self.init = init
        self.host = host
        self._requested_port = port
        self.settings = Settings(
            part_size=part_size,
            max_single_put=max_single_put,
            max_multipart_body=max_multipart_body,
            upload_url_ttl=upload_url_ttl,
            download_url_ttl=download_url_ttl,
            default_page_size=default_page_size,
            max_page_size=max_page_size,
            max_concurrent_executions=max_concurrent_executions,
            job_timeout=job_timeout,
            max_log_bytes=max_log_bytes,
            schedule_interval=schedule_interval,
            notifications_per_hour=notifications_per_hour,
            notifications_per_day=notifications_per_day,
        )
        config = parse_faults(faults) if isinstance(faults, str) else faults
        self._injector = FaultInjector(config)
        self._stats = Stats()
        self._clock = clock or time.time
        if not (idle_timeout > 0 and body_timeout > 0):
            raise ValueError("idle_timeout and body_timeout must be positive")
        self._timeouts = {"idle_timeout": idle_timeout, "body_timeout": body_timeout}
        self._db: Database | None = None
        self._blobs: BlobStore | None = None
        self._runner: web.AppRunner | None = None
        self._jobs: JobRunner | None = None
        self._identity: Identity | None = None
        self._port: int | None = None
        self._lock: DataDirLock | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"<LocalServer {self.data_dir.root} {where}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the data directory and start serving.

        Raises:
            DataDirInUse: another server holds the data directory (the message names it).
            DataDirNotInitialised: ``init`` is false and the directory is not a data directory.
            OSError: the address cannot be bound.
            RuntimeError: the server is already running.
        """
        if self._runner is not None:
            raise RuntimeError("This server is already running")
        fresh = not self.data_dir.is_initialised()
        if fresh and not self.init:
            raise DataDirNotInitialised(
                f"{self.data_dir.root} is not a Labric data directory (no labric.db)"
            )
        before = self.data_dir.entries()
        self.data_dir.create()
        lock = self.data_dir.lock()
        lock.acquire()
        try:
            await self._start(lock)
        except BaseException:
            if fresh:
                self.data_dir.discard_new(before)
            lock.release()
            raise
        self._lock = lock

    async def _start(self, lock: DataDirLock) -> None:
        db = Database(self.data_dir.db_path)
        blobs = BlobStore(self.data_dir.root)
        try:
            await db.open()
            now = self._clock()
            identity = await asyncio.to_thread(self.data_dir.initialise, db, now)
            objects, uploads = await db.run(records.all_generations)
            await blobs.run(blobs.prepare_sync)
            await blobs.run(blobs.sweep_sync, objects, uploads)
            masks = await db.run(images_store.all_masks)
            await blobs.run(images_store.sweep_sync, blobs.root, masks)
            lost = await blobs.run(blobs.lost_uploads_sync, uploads)
            await db.run(records.reset_uploads, lost)  # their parts are no longer on disk
            await settle_unsynced_parts(db, blobs)
            await db.run(records.idem_prune, iso(now - RETENTION_SECONDS))
            state = ServerState(
                settings=self.settings,
                db=db,
                blobs=blobs,
                signer=URLSigner(identity.secret, self._clock),
                injector=self._injector,
                stats=self._stats,
                clock=self._clock,
                operator_org_id=identity.default_org_id,
            )
            jobs = state.jobs = JobRunner(state, self.data_dir.root / "scratch")
            runner = web.AppRunner(
                build_app(state, **self._timeouts),
                access_log=None,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
            await runner.setup()
            try:
                site = web.TCPSite(runner, self.host, self._requested_port)
                await site.start()
                port = int(runner.addresses[0][1])
                lock.record(f"{_url_host(self.host)}:{port}")
                await jobs.start(f"http://{_url_host(self.host)}:{port}/api")
            except BaseException:
                await jobs.stop()
                await runner.cleanup()
                raise
        except BaseException:
            await asyncio.to_thread(blobs.close)
            await db.close()
            raise
        self._db, self._blobs, self._runner, self._identity = db, blobs, runner, identity
        self._jobs = jobs
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving and release the data directory; idempotent."""
        runner, self._runner = self._runner, None
        jobs, self._jobs = self._jobs, None
        db, self._db = self._db, None
        blobs, self._blobs = self._blobs, None
        lock, self._lock = self._lock, None
        try:
            if jobs is not None:
                await jobs.stop()  # kills running job processes and fails their executions
            if runner is not None:
                await runner.cleanup()
        finally:
            try:
                if blobs is not None:
                    await asyncio.to_thread(blobs.close)
                if db is not None:
                    await db.close()
            finally:
                if lock is not None:
                    lock.release()

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @classmethod
    def run_in_thread(cls, *args: Any, **kwargs: Any) -> ThreadedServer:
        """A :class:`ThreadedServer` with these arguments (use it as a ``with`` block)."""
        return ThreadedServer(*args, **kwargs)

    # -- addresses and credentials -----------------------------------------------------------------

    def _require_identity(self) -> Identity:
        if self._identity is None:
            raise RuntimeError("The server has not been started")
        return self._identity

    @property
    def port(self) -> int:
        """The bound port."""
        if self._port is None:
            raise RuntimeError("The server has not been started")
        return self._port

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://HOST:PORT/api`` (requests go to ``{base_url}/v1/...``)."""
        return f"{self.origin}/api"

    @property
    def console_url(self) -> str:
        """The web console's sign-in link, ``http://HOST:PORT/?token=...`` (the token is new on
        every start and signs a browser in to the server's own organisation)."""
        if self._runner is None:
            raise RuntimeError("The server has not been started")
        return f"{self.origin}/?token={self._runner.app[CONSOLE].token}"

    @property
    def admin_key(self) -> str:
        """The default organisation's admin key (read, write, admin); stable across restarts."""
        return self._require_identity().admin_key

    @property
    def default_org_id(self) -> str:
        """The id of the ``default`` organisation."""
        return self._require_identity().default_org_id

    @property
    def faults(self) -> FaultInjector:
        """The fault injector (``server.faults.update(FaultConfig(...))``)."""
        return self._injector

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (as ``GET /v1/admin/stats`` returns them)."""
        snapshot = self._stats.snapshot()
        snapshot["faults"] = dict(self._injector.counters)
        return snapshot

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._stats.reset()

    # -- helpers -----------------------------------------------------------------------------------

    def _database(self) -> Database:
        if self._db is None:
            raise RuntimeError("The server has not been started")
        return self._db

    def _org_id(self, conn: Any, org: str | None) -> str:
        if org is None:
            return self.default_org_id
        return records.get_or_create_org(conn, org, iso(self._clock()))

    def create_key(
        self,
        scopes: str | Iterable[str],
        org: str | None = None,
        *,
        expires_at: float | None = None,
        job_execution_id: str | None = None,
    ) -> str:
        """Create an API key (blocks briefly; callable from any thread).

        Args:
            scopes: ``"read,write"`` or a list of scope names (``read``, ``write``, ``admin``).
            org: The organisation's name (created if missing); default: the ``default`` one.
            expires_at: Unix time after which the key is refused.
            job_execution_id: Make it a job execution's ephemeral key: valid only while that
                execution runs, and uploads default to it.

        Returns:
            The new key, ``lbk_<prefix>_<secret>``.

        Raises:
            ValueError: an unknown scope.
        """
        scope_set = auth.parse_scopes(scopes)
        now = self._clock()

        def create(conn: Any) -> str:
            return auth.create_key(
                conn,
                org_id=self._org_id(conn, org),
                scopes=scope_set,
                now=now,
                expires_at=expires_at,
                job_execution_id=job_execution_id,
            )

        return self._database().run_sync(create)

    async def run_schedules(self) -> list[str]:
        """Fire the job schedules that are due at the clock's current time, now.

        The server also checks every ``schedule_interval`` seconds; a test that moves an injected
        clock calls this instead of waiting. A schedule fires once however it is triggered.

        Returns:
            The ids of the executions this call queued.
        """
        if self._jobs is None:
            raise RuntimeError("The server has not been started")
        return await self._jobs.run_schedules()

    def revoke_key(self, key: str) -> bool:
        """Revoke a key; return whether it existed."""
        parsed = auth.parse_key(key)
        if parsed is None:
            return False
        return self._database().run_sync(records.revoke_key, parsed[0])

    def create_instrument(self, name: str, org: str | None = None) -> str:
        """Create an instrument record and return its id (a shortcut for tests and demos).

        It makes the record only: no pairing code, and no row in the ``instrument`` platform
        table. ``POST /v1/instruments`` (``client.instruments.create``) does both.

        Args:
            name: The instrument's name.
            org: The organisation's name (created if missing); default: the ``default`` one.
        """
        now = iso(self._clock())
        return self._database().run_sync(
            lambda conn: records.insert_instrument(conn, self._org_id(conn, org), name, now)
        )


class ThreadedServer:
    """A :class:`LocalServer` running on its own event loop in a daemon thread.

    A synchronous context manager with the same attributes::

        with ThreadedServer(tmp_path) as server:
            client = Labric(server.admin_key, base_url=server.base_url)

    Takes the same arguments as :class:`LocalServer`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.server = LocalServer(*args, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<ThreadedServer {self.server!r}>"

    def start(self) -> None:
        """Start the server thread and wait until it serves (or re-raise why it could not)."""
        if self._thread is not None:
            raise RuntimeError("This server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._stop_event.wait()
            finally:
                await self.server.stop()

        thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="labric-server", daemon=True
        )
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread = thread

    def stop(self) -> None:
        """Stop the server and join its thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)
        thread.join()

    def __enter__(self) -> ThreadedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def data_dir(self) -> DataDir:
        """The data directory."""
        return self.server.data_dir

    @property
    def port(self) -> int:
        """The bound port."""
        return self.server.port

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``."""
        return self.server.origin

    @property
    def base_url(self) -> str:
        """The API base URL."""
        return self.server.base_url

    @property
    def console_url(self) -> str:
        """The web console's sign-in link (see :attr:`LocalServer.console_url`)."""
        return self.server.console_url

    @property
    def admin_key(self) -> str:
        """The default organisation's admin key."""
        return self.server.admin_key

    @property
    def default_org_id(self) -> str:
        """The id of the ``default`` organisation."""
        return self.server.default_org_id

    @property
    def faults(self) -> FaultInjector:
        """The fault injector."""
        return self.server.faults

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters."""
        return self.server.stats

    def reset_stats(self) -> None:
        """Zero the counters."""
        self.server.reset_stats()

    def create_key(
        self,
        scopes: str | Iterable[str],
        org: str | None = None,
        *,
        expires_at: float | None = None,
        job_execution_id: str | None = None,
    ) -> str:
        """See :meth:`LocalServer.create_key`."""
        return self.server.create_key(
            scopes, org, expires_at=expires_at, job_execution_id=job_execution_id
        )

    def revoke_key(self, key: str) -> bool:
        """See :meth:`LocalServer.revoke_key`."""
        return self.server.revoke_key(key)

    def create_instrument(self, name: str, org: str | None = None) -> str:
        """See :meth:`LocalServer.create_instrument`."""
        return self.server.create_instrument(name, org)

"""The job runner: runs platform executions as subprocesses, fires schedules, wakes waiters.

Process model
    Each platform execution runs the job's script (the version it was queued with) as
    ``sys.executable -u job.py`` in a fresh scratch directory, ``<data dir>/scratch/<id>/``::

        job.py      the script
        files/      LABRIC_FILE_DIR: the input files, copied out of the blob store
        work/       the working directory, HOME and TMPDIR

    The child gets a minimal environment, not the server's: ``PATH``, ``PYTHONPATH`` (the
    directory holding the ``labric`` package, so the script can ``import labric``), and the
    sandbox variables ``LABRIC_API_KEY`` (an ephemeral read+write key bound to the execution),
    ``LABRIC_API_BASE_URL``, ``LABRIC_JOB_ID``, ``LABRIC_JOB_EXECUTION_ID``,
    ``LABRIC_ORGANIZATION_ID``, ``LABRIC_FILE_DIR``, ``LABRIC_FILE_COUNT``, ``LABRIC_FILE_ID_<N>``
    and ``LABRIC_FILE_PATH_<N>`` (N from 0), and ``LABRIC_PARAMETERS`` (the run's parameters as
    one JSON object). The child leads its own
    process group (its own session on POSIX), so everything it starts can be killed together.
    There is no isolation beyond that: a job runs with the server's user rights, so a local
    server should only run scripts its users would run themselves.

    stdout and stderr are merged into one log, read as it arrives and capped at
    ``Settings.max_log_bytes``: past the cap the first and last halves are kept, with a line saying
    how much was left out in between (a traceback, at the end, always survives). The runner's own
    notes (time limit, exit status, restarts) are lines starting ``[labric]``. While an execution
    runs its log is served from memory; when it ends the log is stored with the execution.

Lifecycle and states
    An execution is ``queued`` until a slot is free (at most ``Settings.max_concurrent_executions``
    run at once, oldest first), then ``running``: the runner claims it in one transaction that
    also creates its key. It ends ``completed`` when the process exits with status 0, else
    ``failed``; from then on the key is refused (keys bound to an execution work only while it
    runs), and ``job_completed`` triggers fire in the same transaction. When the main
    process exits, anything it left running in its process group is killed.

Time limits
    The run's ``timeout_seconds``, else the job's, else ``Settings.job_timeout``, in real time
    (not the injectable clock). When it passes, the whole process group is killed (SIGKILL) and the
    execution fails with a log line saying so.

Restarts and failure behaviour
    Executions live in the database, so the queue survives nothing but a clean handover: when the
    server starts, any execution still ``queued`` or ``running`` was left by a previous process and
    can never finish; it is failed with a log line saying why. Stopping the server kills running
    processes and fails them, and the queued ones, the same way. A failure inside the runner
    (a file that cannot be copied, an interpreter that cannot start) fails that execution with the
    reason in its log; it never takes the server down.

Threading model
    Everything here runs on the server's event loop and never blocks it: processes are started and
    read with asyncio's subprocess support, database work goes to the database thread, and file
    copies and scratch cleanup to worker threads. A dispatcher task starts queued executions when
    woken (a run was queued, or a slot freed); a scheduler task fires due schedules every
    ``Settings.schedule_interval`` seconds of real time, comparing against the server's
    injectable clock, so a test can move that clock and call :meth:`JobRunner.run_schedules`
    instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import labric
from labric.server.jobs import firing, store

if TYPE_CHECKING:
    from labric.server.core.auth import Principal
    from labric.server.core.state import ServerState

__all__ = ["JobRunner", "LogBuffer", "on_file_confirmed"]

logger = logging.getLogger("labric.server.jobs")

#: Seconds an ephemeral key outlives its execution's time limit (a backstop: the key is refused
#: as soon as the execution ends).
KEY_GRACE = 60.0
#: Seconds to wait for a killed process group's output pipe to close.
_DRAIN_TIMEOUT = 5.0
_READ_CHUNK = 64 * 1024
_STOPPED = "The server stopped before this execution finished; it was stopped and marked failed"
_RESTARTED = (
    "The server restarted while this execution was queued or running; "
    "it could not finish and was marked failed"
)


class LogBuffer:
    """An execution's captured output, capped: the first and last halves are kept past the cap."""

    def __init__(self, limit: int) -> None:
        self._limit = max(limit, 2)
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def feed(self, data: bytes, *, keep: bool = False) -> None:
        """Add output (``keep``: never drop these bytes, even past the cap)."""
        room = 0 if self._tail else self._limit // 2 - len(self._head)
        if keep and len(data) > room:
            room = 0  # kept bytes go whole into the tail (which then takes all later output)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - (self._limit - len(self._head))
        if keep:
            excess = min(excess, len(self._tail) - len(data))
        if excess > 0:
            del self._tail[:excess]
            self._dropped += excess

    def note(self, message: str) -> None:
        """Add one of the runner's own lines, on a line of its own."""
        last = self._tail[-1:] or self._head[-1:]
        prefix = b"\n" if last and last != b"\n" else b""
        self.feed(prefix + f"[labric] {message}\n".encode(), keep=True)

    def text(self) -> tuple[str, bool]:
        """The log as text, and whether output was left out."""
        head = self._head.decode("utf-8", "replace")
        tail = self._tail.decode("utf-8", "replace")
        if not self._dropped:
            return head + tail, False
        gap = f"\n[labric] ... {self._dropped} bytes of output left out ...\n"
        return head + gap + tail, True


def _package_parent() -> str:
    """The directory that holds the ``labric`` package (what the child's PYTHONPATH needs)."""
    return str(Path(labric.__file__).resolve().parent.parent)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill a child's whole process group (on Windows, the child)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        elif process.returncode is None:
            process.kill()


def _seconds(value: float) -> str:
    return f"{value:g} s"


class JobRunner:
    """Runs the platform executions of one server (see the module docstring).

    Args:
        state: The server's shared state (settings, database, blobs, clock).
        scratch_root: Where executions get their scratch directories.
    """

    def __init__(self, state: ServerState, scratch_root: Path) -> None:
        self._state = state
        self._scratch_root = scratch_root
        self._base_url: str | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._active: dict[str, asyncio.Task[None]] = {}
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._logs: dict[str, LogBuffer] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def __repr__(self) -> str:
        return f"<JobRunner running={len(self._active)}>"

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` has been called."""
        return self._stopping

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, base_url: str) -> None:
        """Fail what a previous process left unfinished, then start dispatching and scheduling.

        Args:
            base_url: The API base URL executions are given (``LABRIC_API_BASE_URL``).
        """
        self._base_url = base_url
        failed = await self._state.db.run(
            functools.partial(store.fail_unfinished, now=self._state.now(), reason=_RESTARTED)
        )
        if failed:
            logger.warning(
                "Marked %d unfinished job execution(s) failed after a restart", len(failed)
            )
        await asyncio.to_thread(shutil.rmtree, self._scratch_root, True)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._dispatch(), name="labric-jobs-dispatch"),
            loop.create_task(self._schedule(), name="labric-jobs-schedule"),
        ]
        self._wake.set()  # nothing is queued after the clean-up, but be safe

    async def stop(self) -> None:
        """Kill running executions, fail them and the queued ones, and stop the loops."""
        if self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for process in list(self._processes.values()):
            _kill_group(process)
        active = list(self._active.values())
        if active:
            await asyncio.wait(active, timeout=_DRAIN_TIMEOUT * 2)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._state.db.run(
                functools.partial(store.fail_unfinished, now=self._state.now(), reason=_STOPPED)
            )
        for execution_id in list(self._waiters):
            self.notify(execution_id)

    def wake(self) -> None:
        """Tell the dispatcher that executions may be waiting for a slot."""
        self._wake.set()

    # -- triggers ------------------------------------------------------------------------------

    async def file_confirmed(self, file_id: str, uploader_execution_id: str | None) -> list[str]:
        """Fire ``file_uploaded`` triggers for a newly confirmed file; return the queued ids."""
        started = await self._state.db.run(
            functools.partial(
                firing.fire_file_uploaded,
                file_id=file_id,
                uploader_execution_id=uploader_execution_id,
                default_timeout=self._state.settings.job_timeout,
                now=self._state.now(),
            )
        )
        if started:
            self.wake()
        return started

    async def run_schedules(self) -> list[str]:
        """Fire every schedule due at the server clock's current time; return the queued ids."""
        if self._stopping:
            return []
        started = await self._state.db.run(
            functools.partial(
                firing.fire_schedules,
                clock=self._state.clock(),
                default_timeout=self._state.settings.job_timeout,
            )
        )
        if started:
            self.wake()
        return started

    # -- waiting for an execution to end -------------------------------------------------------

    def watch(self, execution_id: str) -> asyncio.Future[None]:
        """A future resolved when the execution may have ended (register before reading it)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._stopping:
            future.set_result(None)
        else:
            self._waiters.setdefault(execution_id, set()).add(future)
        return future

    def unwatch(self, execution_id: str, future: asyncio.Future[None]) -> None:
        """Forget a future from :meth:`watch`."""
        waiters = self._waiters.get(execution_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[execution_id]
        if not future.done():
            future.cancel()

    def notify(self, execution_id: str) -> None:
        """Wake whoever watches an execution (it ended, or the server is stopping)."""
        for future in self._waiters.pop(execution_id, set()):
            if not future.done():
                future.set_result(None)

    def live_logs(self, execution_id: str) -> tuple[str, bool] | None:
        """The log of an execution running right now, or ``None``."""
        buffer = self._logs.get(execution_id)
        return buffer.text() if buffer is not None else None

    # -- dispatching ---------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        settings = self._state.settings
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while not self._stopping and len(self._active) < settings.max_concurrent_executions:
                    claim = await self._state.db.run(
                        functools.partial(
                            store.claim_next,
                            clock=self._state.clock(),
                            default_timeout=settings.job_timeout,
                            key_grace=KEY_GRACE,
                        )
                    )
                    if claim is None:
                        break
                    task = asyncio.get_running_loop().create_task(
                        self._execute(claim), name=f"labric-job-{claim.execution_id}"
                    )
                    self._active[claim.execution_id] = task
                    task.add_done_callback(functools.partial(self._finished, claim.execution_id))
            except Exception:
                logger.exception("The job dispatcher failed; retrying when woken again")
                await asyncio.sleep(0.5)
                self._wake.set()

    def _finished(self, execution_id: str, task: asyncio.Task[None]) -> None:
        self._active.pop(execution_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Job execution %s crashed the runner", execution_id, exc_info=task.exception()
            )
        self._wake.set()

    async def _schedule(self) -> None:
        while True:
            try:
                await self.run_schedules()
            except Exception:
                logger.exception("Firing job schedules failed")
            await asyncio.sleep(self._state.settings.schedule_interval)

    # -- one execution -------------------------------------------------------------------------

    async def _execute(self, claim: store.Claim) -> None:
        execution_id = claim.execution_id
        log = LogBuffer(self._state.settings.max_log_bytes)
        self._logs[execution_id] = log
        scratch = self._scratch_root / execution_id
        status, exit_code = "failed", None
        try:
            status, exit_code = await self._run(claim, scratch, log)
        except Exception as exc:
            logger.exception("Job execution %s could not be run", execution_id)
            log.note(f"The execution could not be run: {type(exc).__name__}: {exc}")
        finally:
            text, truncated = log.text()
            try:
                started = await self._state.db.run(
                    functools.partial(
                        firing.finish_platform,
                        execution_id=execution_id,
                        status=status,
                        exit_code=exit_code,
                        logs=text,
                        truncated=truncated,
                        clock=self._state.clock(),
                        default_timeout=self._state.settings.job_timeout,
                    )
                )
            finally:
                self._logs.pop(execution_id, None)
                self.notify(execution_id)
            if started:
                self.wake()
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def _prepare(self, claim: store.Claim, scratch: Path) -> list[Path]:
        """Lay out the scratch directory (on a worker thread); return the input files' paths."""
        files_dir, work = scratch / "files", scratch / "work"
        for directory in (files_dir, work):
            directory.mkdir(parents=True, exist_ok=True)
        (scratch / "job.py").write_text(claim.code or "", encoding="utf-8")
        used: set[str] = set()
        paths = []
        for item in claim.files:
            name = item.file_name
            stem, ext = os.path.splitext(name)
            counter = 1
            while name in used:
                counter += 1
                name = f"{stem} ({counter}){ext}"
            used.add(name)
            dest = files_dir / name
            shutil.copyfile(self._state.blobs.object_path(item.id, item.generation), dest)
            paths.append(dest)
        return paths

    def _environment(
        self, claim: store.Claim, scratch: Path, paths: Sequence[Path]
    ) -> dict[str, str]:
        work = scratch / "work"
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(work),
            "TMPDIR": str(work),
            "PYTHONPATH": _package_parent(),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONIOENCODING": "utf-8",
            "LABRIC_API_KEY": claim.api_key,
            "LABRIC_API_BASE_URL": self._base_url or "",
            "LABRIC_JOB_ID": claim.job_id,
            "LABRIC_JOB_EXECUTION_ID": claim.execution_id,
            "LABRIC_ORGANIZATION_ID": claim.org_id,
            "LABRIC_FILE_DIR": str(scratch / "files"),
            "LABRIC_FILE_COUNT": str(len(paths)),
            "LABRIC_PARAMETERS": json.dumps(claim.parameters, separators=(",", ":")),
        }
        for index, (item, path) in enumerate(zip(claim.files, paths, strict=True)):
            env[f"LABRIC_FILE_ID_{index}"] = item.id
            env[f"LABRIC_FILE_PATH_{index}"] = str(path)
        if os.name == "nt":  # Windows processes need these to start at all
            for name in ("SYSTEMROOT", "COMSPEC", "PATHEXT"):
                if name in os.environ:
                    env[name] = os.environ[name]
        return env

    async def _run(
        self, claim: store.Claim, scratch: Path, log: LogBuffer
    ) -> tuple[str, int | None]:
        """Run one claimed execution; return its final status and exit code."""
        if claim.code is None:
            log.note("This job has no script to run")
            return "failed", None
        if claim.missing_files:
            log.note(f"Input file(s) no longer available: {', '.join(claim.missing_files)}")
            return "failed", None
        paths = await asyncio.to_thread(self._prepare, claim, scratch)
        if self._stopping:
            log.note(_STOPPED)
            return "failed", None
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            str(scratch / "job.py"),
            cwd=scratch / "work",
            env=self._environment(claim, scratch, paths),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=os.name == "posix",
        )
        self._processes[claim.execution_id] = process
        assert process.stdout is not None
        pump = asyncio.get_running_loop().create_task(self._pump(process.stdout, log))
        timed_out = False
        try:
            if self.stopping:  # stop() ran while the process was starting
                _kill_group(process)
            try:
                await asyncio.wait_for(process.wait(), claim.timeout_seconds)
            except TimeoutError:
                timed_out = True
                _kill_group(process)
                await process.wait()
        finally:
            self._processes.pop(claim.execution_id, None)
            _kill_group(process)  # whatever the script left running in its group
            try:
                await asyncio.wait_for(asyncio.shield(pump), _DRAIN_TIMEOUT)
            except TimeoutError:
                pump.cancel()
                log.note("A process outside the job's process group kept its output open")
        code = process.returncode
        if timed_out:
            log.note(
                f"The execution exceeded its time limit of {_seconds(claim.timeout_seconds)} "
                "and was stopped"
            )
            return "failed", code
        if code == 0:
            return "completed", 0
        if self.stopping:
            log.note(_STOPPED)
        elif code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown signal"
            log.note(f"The process was killed by signal {-code} ({name})")
        else:
            log.note(f"The process exited with status {code}")
        return "failed", code

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, log: LogBuffer) -> None:
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                return
            log.feed(chunk)


async def on_file_confirmed(state: ServerState, file_id: str, uploader: Principal) -> None:
    """Fire the ``file_uploaded`` triggers of a file just confirmed (called by the files routes).

    A failure here is logged, never raised: the upload itself has already succeeded.
    """
    if state.jobs is None:
        return
    try:
        await state.jobs.file_confirmed(file_id, uploader.job_execution_id)
    except Exception:
        logger.exception("Firing file_uploaded triggers for file %s failed", file_id)

"""The sync runtime behind :class:`labric.Labric`: one event-loop thread per client.

Threading model
    Each ``Labric`` owns one :class:`Portal`: a daemon thread running an asyncio event loop (started
    with :func:`anyio.run`) that hosts an anyio :class:`~anyio.from_thread.BlockingPortal` for the
    client's whole life. The client's :class:`~labric.AsyncLabric`, and so its one aiohttp session,
    is used only inside that loop. A sync call crosses into the loop once: the calling thread
    schedules one task with ``call_soon_threadsafe`` and blocks on a lock until the task has
    finished. (``BlockingPortal.call`` would cross twice, since ``start_task_soon`` also waits for
    the task to be spawned; that second hand-off costs about as much as the first, which is most
    of the facade's overhead on a fast local request.) A pager crosses once per page, never per
    item. Any number of threads may call at once: their tasks run concurrently in the loop and
    share the connection pool. A call from code running its own event loop in another thread (a
    Jupyter cell, an async web handler) blocks that loop until it returns, as any blocking call
    does. A call from the portal's own loop thread (say, from a callback the SDK runs there) could
    never complete, so it raises :class:`~labric.errors.PortalUsageError` instead.

Errors and interruption
    The loop-side exception is raised in the caller with its loop-side frames in the traceback, so
    the sync and async clients raise the same classes; a single-error exception group is unwrapped
    to that error. If the caller is interrupted while it waits (Ctrl-C raising
    ``KeyboardInterrupt``), the loop-side task is cancelled (which aborts its request and drops the
    connection), the caller waits a bounded time for it to unwind, then the interruption
    propagates.

Shutdown
    :meth:`Portal.close` (``Labric.close()``, or leaving a ``with`` block) cancels calls still
    running, closes the ``AsyncLabric`` inside the loop, stops the loop and joins the thread. It is
    idempotent, and later calls raise :class:`~labric.errors.ClientClosedError`. A client that is
    garbage-collected, or still open when the interpreter exits, is closed the same way by a
    :func:`weakref.finalize` (which runs from :mod:`atexit`). The loop thread is a daemon, so the
    interpreter never waits for it, and every wait during shutdown is bounded: exit neither hangs
    nor leaves an unclosed aiohttp session behind to warn about.

Fork
    A forked child has no loop thread, only a copy of the parent's objects, including sockets and
    an epoll instance the child shares with the parent. An :func:`os.register_at_fork` hook makes
    every portal in the child forget the parent's runtime without touching it: closing those
    sockets, or unregistering them from the shared epoll instance, would break the parent's
    connections. The forgotten objects are kept referenced, so no finalizer ever runs on them in
    the child. The child's next call starts a fresh loop thread and a fresh ``AsyncLabric`` built
    from the same arguments. Pagers and context managers opened before the fork belong to the
    parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, cast

import anyio
from anyio.from_thread import BlockingPortal

from labric.errors import ClientClosedError, PortalUsageError

__all__ = ["AsyncClient", "Portal", "SyncResource"]

logger = logging.getLogger("labric")

R = TypeVar("R")
T = TypeVar("T")

#: How long ``close()`` and interpreter exit wait for the loop thread to finish closing.
DEFAULT_CLOSE_TIMEOUT = 10.0
#: How long an interrupted caller waits for its cancelled loop-side task to unwind.
DEFAULT_CANCEL_GRACE = 5.0
# A blocked caller wakes this often to check that the loop thread is still alive; on Windows, where
# a lock wait cannot be interrupted by Ctrl-C, it also bounds how long an interruption waits.
_WAIT_SLICE = 0.25 if sys.platform == "win32" else 5.0

_CLOSED = "This client has been closed; create a new one."
_LOOP_THREAD = (
    "The sync client was called from its own event-loop thread (for example from a callback the "
    "SDK runs there); the call could never complete. Use the AsyncLabric from async code, or make "
    "the call outside the callback."
)


class AsyncClient(Protocol):
    """What a portal can host: an async client that closes with ``aclose()``."""

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=AsyncClient)


class _Call:
    """One crossing: the caller blocks on ``done`` until the loop side has filled in the outcome."""

    __slots__ = ("done", "error", "finished", "result", "submitted", "task")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.submitted = False
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    def finish(self) -> None:
        self.finished = True
        self.done.release()


class _Runtime(Generic[C]):
    """One loop thread, the blocking portal it hosts, and the async client living in it."""

    def __init__(self, client: C, name: str) -> None:
        self.client = client
        self.pid = os.getpid()
        self.lock = threading.Lock()  # orders submissions against the stop request
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop
        self.portal: BlockingPortal
        self._wake: asyncio.Event
        ready: Future[None] = Future()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self.thread.start()
        ready.result()
        self.ident = self.thread.ident

    # -- loop thread ------------------------------------------------------------------------

    def _main(self, ready: Future[None]) -> None:
        try:
            anyio.run(self._serve, ready, backend="asyncio")
        except BaseException as exc:
            if ready.done():
                raise
            ready.set_exception(exc)
        finally:
            with self.lock:
                self.stopping = True

    async def _serve(self, ready: Future[None]) -> None:
        async with BlockingPortal() as portal:
            self.portal = portal
            self.loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            ready.set_result(None)
            try:
                await self._wake.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._drain()

    async def _drain(self) -> None:
        # Calls still running get cancelled (their callers see ClientClosedError); then the client
        # is closed here, in the loop its session belongs to.
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        try:
            await self.client.aclose()
        except Exception:  # closing is best effort; there is no caller left to tell
            logger.debug("Closing the client in its loop thread failed", exc_info=True)

    def _spawn(self, call: _Call, fn: Callable[[C], Any], awaited: bool) -> None:
        task = self.loop.create_task(self._run(call, fn, awaited))
        call.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call: _Call, fn: Callable[[C], Any], awaited: bool) -> None:
        try:
            result = fn(self.client)
            call.result = await result if awaited else result
        except BaseException as exc:  # delivered to the caller, whatever it is
            call.error = exc
        finally:
            call.finish()

    @staticmethod
    def _cancel(call: _Call) -> None:
        if call.task is not None:
            call.task.cancel()

    # -- any thread -------------------------------------------------------------------------

    def submit(self, call: _Call, fn: Callable[[C], Any], *, awaited: bool) -> None:
        """Schedule ``fn(client)`` in the loop (awaiting its result if ``awaited``)."""
        with self.lock:
            if self.stopping:
                raise ClientClosedError(_CLOSED)
            call.submitted = True
            self.loop.call_soon_threadsafe(self._spawn, call, fn, awaited)

    def cancel(self, call: _Call) -> None:
        """Cancel a submitted call's task; a no-op once the loop has stopped."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to cancel
            self.loop.call_soon_threadsafe(self._cancel, call)

    def stop(self, timeout: float) -> None:
        """Ask the loop to drain and close the client; wait for it unless on the loop thread."""
        with self.lock:
            if not self.stopping:
                self.stopping = True
                try:
                    self.loop.call_soon_threadsafe(self._wake.set)
                except RuntimeError:
                    return
        if threading.get_ident() != self.ident:
            self.thread.join(timeout)
            if self.thread.is_alive():
                logger.debug("The client's loop thread did not stop within %.1fs", timeout)


class _Box:
    """What the finalizer needs, without referring to the portal itself."""

    __slots__ = ("closed", "rt")

    def __init__(self) -> None:
        self.rt: _Runtime[Any] | None = None
        self.closed = False


def _shutdown(box: _Box, timeout: float) -> None:
    box.closed = True
    rt, box.rt = box.rt, None
    if rt is not None and rt.pid == os.getpid():
        rt.stop(timeout)


class Portal(Generic[C]):
    """Runs one async client on its own event-loop thread and lets any other thread call it.

    Args:
        factory: Builds the async client. It is called here, in the caller's thread (so that
            configuration errors surface at once), and again in a forked child.
        name: Names the loop thread, for debuggers and thread dumps.

    Raises:
        Whatever ``factory`` raises, e.g. :class:`~labric.errors.ConfigurationError`.
    """

    def __init__(self, factory: Callable[[], C], *, name: str = "labric-portal") -> None:
        client = factory()
        self._factory = factory
        self._name = name
        self._lock = threading.Lock()
        self._box = _Box()
        self._client = client
        self._box.rt = _Runtime(client, name)
        self._finalizer = weakref.finalize(self, _shutdown, self._box, DEFAULT_CLOSE_TIMEOUT)
        _PORTALS.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._box.closed else "open"
        return f"<Portal {self._name} {state}>"

    @property
    def client(self) -> C:
        """The async client calls currently go to (also after :meth:`close`, for its settings)."""
        return self._client

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (or the client was finalized)."""
        return self._box.closed

    def describe(self, name: str) -> str:
        """The async client's ``repr`` under the sync class's ``name``."""
        text = repr(self._client)
        head, sep, rest = text.partition(" ")
        return f"<{name}{sep}{rest}" if head.startswith("<") else text

    # -- calls ------------------------------------------------------------------------------

    def call(self, fn: Callable[[C], Awaitable[R]]) -> R:
        """Await ``fn(client)`` in the loop thread and return its result.

        If the caller is interrupted while it waits (Ctrl-C), the loop-side task is cancelled and
        given :data:`DEFAULT_CANCEL_GRACE` seconds to unwind before the interruption propagates.

        Raises:
            ClientClosedError: the client is closed (or was closed during the call).
            PortalUsageError: called from the loop thread itself.
            Exception: whatever ``fn`` raised (a single-error group unwrapped to its error).
        """
        rt = self._runtime()
        call = _Call()
        return cast(R, self._wait(rt, call, lambda: rt.submit(call, fn, awaited=True)))

    def call_sync(self, fn: Callable[[C], R]) -> R:
        """Call ``fn(client)`` in the loop thread (without awaiting) and return its result."""
        rt = self._runtime()
        call = _Call()
        return cast(R, self._wait(rt, call, lambda: rt.submit(call, fn, awaited=False)))

    def wrap_context(
        self, make: Callable[[C], AbstractAsyncContextManager[T]]
    ) -> AbstractContextManager[T]:
        """A context manager that enters and exits ``make(client)`` in one loop-side task.

        Context variables that ``__aenter__`` sets (``jobs.track()`` sets the current execution)
        are also set in the calling thread for the duration of the ``with`` block, so calls made
        inside it see them, as calls inside the ``async with`` block would.
        """
        return _BlockingContext(self, make)

    def close(self) -> None:
        """Cancel running calls, close the client in its loop, stop the loop; idempotent.

        Raises:
            PortalUsageError: called from the loop thread itself.
        """
        rt = self._box.rt
        if rt is not None and threading.get_ident() == rt.ident:
            raise PortalUsageError(_LOOP_THREAD)
        self._finalizer()

    # -- internals --------------------------------------------------------------------------

    def _runtime(self) -> _Runtime[C]:
        rt = self._box.rt
        if rt is None:
            rt = self._restart()
        if threading.get_ident() == rt.ident:
            raise PortalUsageError(_LOOP_THREAD)
        return rt

    def _restart(self) -> _Runtime[C]:
        with self._lock:
            if self._box.closed:
                raise ClientClosedError(_CLOSED)
            rt = self._box.rt
            if rt is None:  # first use in a forked child
                client = self._factory()
                rt = _Runtime(client, self._name)
                self._client = client
                self._box.rt = rt
            return rt

    def _wait(
        self,
        rt: _Runtime[C],
        call: _Call,
        submit: Callable[[], object],
        task: _Call | None = None,
    ) -> Any:
        """Run ``submit``, then block until ``call`` has finished and return its outcome.

        ``task`` is the submitted call to cancel on interruption when ``call`` is only a
        milestone of it (the ``__aenter__`` of a context manager's holding task).
        """
        target = task or call
        try:
            submit()
            while not call.done.acquire(timeout=_WAIT_SLICE):
                if not rt.thread.is_alive():
                    break
        except BaseException:
            # Interrupted (Ctrl-C): cancel the loop-side work and give it a moment to unwind.
            if target.submitted and not call.finished and rt.thread.is_alive():
                rt.cancel(target)
                call.done.acquire(timeout=DEFAULT_CANCEL_GRACE)
            raise
        if not call.finished:
            raise ClientClosedError("The client's event-loop thread has stopped.")
        error = call.error
        if error is None:
            return call.result
        call.error = None
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if isinstance(error, asyncio.CancelledError):
            raise ClientClosedError("The client was closed while this call was running.") from None
        try:
            raise error
        finally:
            del error

    def _forget_runtime_after_fork(self) -> None:
        # In the child, the parent's loop thread does not exist and its locks may be held forever.
        self._lock = threading.Lock()
        rt, self._box.rt = self._box.rt, None
        if rt is not None:
            _ORPHANED_AFTER_FORK.append(rt)


class _BlockingContext(AbstractContextManager[T], Generic[C, T]):
    """Runs an async context manager's ``__aenter__`` and ``__aexit__`` in one loop-side task."""

    def __init__(self, portal: Portal[C], make: Callable[[C], AbstractAsyncContextManager[T]]):
        self._portal = portal
        self._make = make

    def __enter__(self) -> T:
        portal = self._portal
        rt = portal._runtime()
        self._rt = rt
        self._entered = _Call()  # finished when __aenter__ has returned or raised
        self._held = _Call()  # the holding task: finished after __aexit__
        self._exit_info: tuple[Any, Any, Any] = (None, None, None)
        self._changed: list[tuple[contextvars.ContextVar[Any], Any]] = []
        value = cast(T, portal._wait(rt, self._entered, self._start, task=self._held))
        # Each later call's task copies this thread's context (call_soon_threadsafe does), so
        # setting here is what makes the variables visible to calls inside the block.
        self._tokens = [(var, var.set(v)) for var, v in self._changed]
        return value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        rt = self._rt
        self._exit_info = (exc_type, exc, tb)
        for var, token in reversed(self._tokens):
            with contextlib.suppress(ValueError):  # left in another context: nothing to undo
                var.reset(token)
        return bool(self._portal._wait(rt, self._held, self._release))

    def _start(self) -> None:
        self._rt.submit(self._held, self._hold, awaited=True)

    def _release(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop stopped; the holder was cancelled
            self._rt.loop.call_soon_threadsafe(self._resume.set)

    async def _hold(self, client: C) -> bool | None:
        entered = self._entered
        before = contextvars.copy_context()
        try:
            cm = self._make(client)
            entered.result = await cm.__aenter__()
        except BaseException as exc:
            entered.error = exc
            entered.finish()
            return None
        self._changed = [
            (var, value)
            for var, value in contextvars.copy_context().items()
            if var not in before or before[var] is not value
        ]
        self._resume = asyncio.Event()
        entered.finish()
        try:
            await self._resume.wait()
        except BaseException as exc:
            # Cancelled before the caller left the block (the client is closing): exit with it.
            await cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return await cm.__aexit__(*self._exit_info)


class SyncResource(Generic[C, R]):
    """Base of the generated sync resource classes.

    Args:
        portal: The client's portal; every call crosses it once.
        get: Finds the async twin on the portal's current async client (it changes after a fork).
    """

    def __init__(self, portal: Portal[C], get: Callable[[C], R]) -> None:
        self._portal = portal
        self._get = get

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


_PORTALS: weakref.WeakSet[Portal[Any]] = weakref.WeakSet()
_ORPHANED_AFTER_FORK: list[_Runtime[Any]] = []


def _after_fork_in_child() -> None:
    for portal in list(_PORTALS):
        portal._forget_runtime_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

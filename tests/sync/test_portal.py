"""The sync client's lifecycle: threads, foreign event loops, misuse, Ctrl-C, fork, exit, close."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import pytest

import labric._blocking.portal as portal_module
from labric import AsyncLabric, Labric
from labric._blocking.portal import Portal
from labric.errors import (
    ClientClosedError,
    ConfigurationError,
    NotFoundError,
    PortalUsageError,
)

from ._support import KEY, N_FILES, SLOW_ID, StubAPI

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork")


def run_script(
    script: str, stub: StubAPI, *, timeout: float = 30.0, **kwargs: Any
) -> subprocess.Popen[str]:
    """Start ``script`` in a fresh interpreter (warnings shown) with the stub's address."""
    env = dict(os.environ, STUB_BASE_URL=stub.base_url, STUB_KEY=KEY, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-W", "default", "-c", textwrap.dedent(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


# -- plain use --------------------------------------------------------------------------------


def test_plain_script_exits_cleanly_without_close(stub: StubAPI) -> None:
    script = """
        import atexit, os
        # Registered first, so it runs last: after the client was closed at exit.
        atexit.register(lambda: print("closed at exit:", client.is_closed))
        from labric import Labric
        client = Labric(os.environ["STUB_KEY"], base_url=os.environ["STUB_BASE_URL"])
        print(client.files.get("f0001").file_id)
        # no close(): interpreter exit must neither hang nor warn
    """
    started = time.monotonic()
    proc = run_script(script, stub)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out.splitlines(), err) == (0, ["f0001", "closed at exit: True"], "")
    assert time.monotonic() - started < 15


def test_exit_with_a_half_read_pager_and_open_clients(stub: StubAPI) -> None:
    script = """
        import os
        from labric import Labric
        a = Labric(os.environ["STUB_KEY"], base_url=os.environ["STUB_BASE_URL"])
        b = Labric(os.environ["STUB_KEY"], base_url=os.environ["STUB_BASE_URL"])
        items = iter(a.files.list(page_size=10))
        print(next(items).file_id)              # a prefetch of page 2 is in flight
        print(b.files.content("f0002").file_id)
    """
    proc = run_script(script, stub)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out.split(), err) == (0, ["f0000", "f0002"], "")


def test_calls_from_many_threads_share_one_client(client: Labric) -> None:
    def work(n: int) -> tuple[list[str], int]:
        ids = [client.files.get(f"f{(n * 7 + i) % N_FILES:04d}").file_id for i in range(20)]
        return ids, len(client.files.list(page_size=50).to_list())

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for n, (ids, count) in enumerate(results):
        assert ids == [f"f{(n * 7 + i) % N_FILES:04d}" for i in range(20)]
        assert count == N_FILES


def test_call_from_a_running_event_loop_in_this_thread(client: Labric) -> None:
    # Like a Jupyter cell or an async web handler calling the sync client: it blocks that loop
    # for the duration of the call, and works.
    async def handler() -> str:
        return client.files.get("f0003").file_id

    assert asyncio.run(handler()) == "f0003"


def test_call_from_an_event_loop_in_another_thread(client: Labric) -> None:
    result: list[object] = []

    def other_thread() -> None:
        async def main() -> None:
            await asyncio.sleep(0)
            result.append(client.files.get("f0004").file_id)
            result.append(len(client.files.list(limit=30, page_size=7).to_list()))

        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(30)
    assert result == ["f0004", 30]


def test_call_from_the_portal_loop_thread_raises_portal_usage_error(client: Labric) -> None:
    # What a callback the SDK runs in its loop thread would do (an on_progress handler, say).
    with pytest.raises(PortalUsageError, match="own event-loop thread"):
        client._portal.call_sync(lambda _c: client.files.get("f0001"))
    with pytest.raises(PortalUsageError):
        client._portal.call_sync(lambda _c: client.close())
    assert client.files.get("f0001").file_id == "f0001"  # the client is unharmed


# -- errors -----------------------------------------------------------------------------------


def test_errors_are_the_async_classes_with_loop_side_frames(client: Labric, stub: StubAPI) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.files.get("missing")
    exc = caught.value
    assert exc.status_code == 404
    assert exc.request_id == "req-404"
    text = "".join(traceback.format_exception(exc))
    assert "test_errors_are_the_async_classes" in text  # the caller's frame
    assert "resources/files.py" in text  # and where it failed, in the loop thread

    async def same_on_the_async_side() -> type[BaseException]:
        async with AsyncLabric(KEY, base_url=stub.base_url, max_retries=0) as ac:
            try:
                await ac.files.get("missing")
            except Exception as e:
                return type(e)
        raise AssertionError("no error")

    assert asyncio.run(same_on_the_async_side()) is type(exc)


def test_single_error_groups_are_unwrapped(client: Labric) -> None:
    async def one() -> None:
        raise ExceptionGroup("in a task group", [ValueError("boom")])

    async def two() -> None:
        raise ExceptionGroup("in a task group", [ValueError("a"), KeyError("b")])

    with pytest.raises(ValueError, match="boom"):
        client._portal.call(lambda _c: one())
    with pytest.raises(ExceptionGroup):
        client._portal.call(lambda _c: two())


def test_configuration_errors_are_raised_at_once_without_a_thread() -> None:
    before = threading.active_count()
    with pytest.raises(ConfigurationError, match="LABRIC_API_KEY"):
        Labric()
    assert threading.active_count() == before


# -- crossings --------------------------------------------------------------------------------


def test_one_crossing_per_call_and_per_page(
    client: Labric, monkeypatch: pytest.MonkeyPatch
) -> None:
    crossings = 0
    submit = portal_module._Runtime.submit

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal crossings
        crossings += 1
        submit(self, *args, **kwargs)

    monkeypatch.setattr(portal_module._Runtime, "submit", counting)
    client.files.get("f0001")
    assert crossings == 1
    crossings = 0
    items = list(client.files.list(page_size=25))  # 10 pages
    assert len(items) == N_FILES
    assert crossings == 1 + 10  # building the pager, then one per page
    crossings = 0
    assert len(client.files.list(page_size=25).first_page()) == 25
    assert crossings == 2


def test_pager_api(client: Labric) -> None:
    pager = client.files.list(page_size=100, limit=230)
    assert [len(p) for p in pager.pages()] == [100, 100, 30]
    assert pager.first_page()[0].file_id == "f0000"
    assert [f.file_id for f in pager][-1] == "f0229"  # re-iterable, from the start
    assert len(pager.to_list()) == 230
    for n, _ in enumerate(pager):  # leaving early closes the stream (and its prefetch)
        if n == 5:
            break
    with pytest.raises(ValueError, match="at least 1"):
        client.files.list(limit=0)  # argument errors surface where the pager is made


# -- Ctrl-C -----------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_request_in_the_loop(stub: StubAPI) -> None:
    script = f"""
        import os, signal, sys
        from labric import Labric
        # A runner that started the suite in the background may hand SIGINT down ignored;
        # Ctrl-C is what this test is about, so the script asks for Python's usual handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        client = Labric(os.environ["STUB_KEY"], base_url=os.environ["STUB_BASE_URL"])
        try:
            client.files.get({SLOW_ID!r})
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.stdin.readline()  # stay alive until the test has looked at the server
            raise
    """
    proc = run_script(script, stub, stdin=subprocess.PIPE)
    try:
        assert stub.slow_arrived.wait(30), "the request never reached the server"
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "interrupted"
        assert time.monotonic() - interrupted_at < 10
        # The process is still alive: the server saw the request go away because the loop-side
        # task was cancelled, not because the process died.
        assert stub.slow_cancelled.wait(10), "the request was not cancelled"
        assert proc.poll() is None
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (-signal.SIGINT, 1, 130)
    assert err.rstrip().endswith("KeyboardInterrupt")
    assert "Unclosed" not in err
    assert "Warning" not in err


def test_close_from_another_thread_ends_a_running_call(client: Labric, stub: StubAPI) -> None:
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            client.files.get(SLOW_ID)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    assert stub.slow_arrived.wait(10)
    client.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ClientClosedError)
    assert stub.slow_cancelled.wait(10)


# -- fork -------------------------------------------------------------------------------------


def test_fork_child_gets_a_fresh_client_and_the_parent_is_untouched(stub: StubAPI) -> None:
    script = """
        import os, sys
        from labric import Labric, Timeout
        client = Labric(
            os.environ["STUB_KEY"], base_url=os.environ["STUB_BASE_URL"], timeout=Timeout(read=5)
        )
        parent_client = client._portal.client
        print("parent", client.files.get("f0001").file_id)   # a pooled keep-alive connection
        pid = os.fork()
        if pid == 0:
            import weakref
            # The parent's client must never be torn down here (its sockets are shared).
            weakref.finalize(parent_client, print, "parent client finalized!").atexit = False
            print("child", client.files.get("f0002").file_id, flush=True)
            print("child-fresh", client._portal.client is not parent_client, flush=True)
            print("child-list", len(client.files.list(page_size=100).to_list()), flush=True)
            sys.exit(0)   # a normal exit: finalizers run, and must not touch the parent's objects
        _, status = os.waitpid(pid, 0)
        print("child-status", os.waitstatus_to_exitcode(status))
        print("parent-again", client.files.get("f0003").file_id)  # same connection, still works
        print("parent-same", client._portal.client is parent_client)
    """
    proc = run_script(script, stub)
    out, err = proc.communicate(timeout=60)
    assert err == ""
    assert proc.returncode == 0
    assert out.splitlines() == [
        "parent f0001",
        "child f0002",
        "child-fresh True",
        f"child-list {N_FILES}",
        "child-status 0",
        "parent-again f0003",
        "parent-same True",
    ]


def test_fork_child_that_does_not_use_the_client_exits_cleanly(stub: StubAPI) -> None:
    script = """
        import os
        from labric import Labric
        client = Labric(os.environ["STUB_KEY"], base_url=os.environ["STUB_BASE_URL"])
        client.files.get("f0001")
        pid = os.fork()
        if pid == 0:
            raise SystemExit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), client.files.get("f0002").file_id)
    """
    proc = run_script(script, stub)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.split(), err) == (0, ["0", "f0002"], "")


# -- close and context manager ----------------------------------------------------------------


def test_close_is_idempotent_and_use_after_close_raises(stub: StubAPI) -> None:
    client = Labric(KEY, base_url=stub.base_url)
    pager = client.files.list()
    assert not client.is_closed
    client.close()
    client.close()
    assert client.is_closed
    assert "closed" in repr(client)
    with pytest.raises(ClientClosedError):
        client.files.get("f0001")
    with pytest.raises(ClientClosedError):
        pager.first_page()
    with pytest.raises(ClientClosedError), client:
        pass


def test_context_manager_closes(stub: StubAPI) -> None:
    with Labric(KEY, base_url=stub.base_url) as client:
        assert client.files.get("f0001").file_id == "f0001"
        thread = client._portal._box.rt.thread  # type: ignore[union-attr]
    assert client.is_closed
    assert not thread.is_alive()


def test_garbage_collected_client_stops_its_thread(stub: StubAPI) -> None:
    client = Labric(KEY, base_url=stub.base_url)
    client.files.get("f0001")
    thread = client._portal._box.rt.thread  # type: ignore[union-attr]
    del client
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()


# -- async context managers through the portal ------------------------------------------------


class _FakeAsync:
    """Stands in for an async client with a context-manager method (like ``jobs.track``)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    async def aclose(self) -> None:
        self.events.append(("aclose", None))

    @asynccontextmanager
    async def track(self, name: str) -> AsyncIterator[str]:
        task = asyncio.current_task()
        self.events.append(("enter", task))
        try:
            yield name.upper()
        except BaseException as exc:
            self.events.append(("error", type(exc)))
            if isinstance(exc, KeyError):
                return  # suppressed
            raise
        finally:
            self.events.append(("exit-same-task", asyncio.current_task() is task))


def test_async_context_managers_become_sync_ones() -> None:
    fake = _FakeAsync()
    portal = Portal(lambda: fake)
    try:
        with portal.wrap_context(lambda c: c.track("run")) as value:
            assert value == "RUN"
        with pytest.raises(ValueError, match="inside"), portal.wrap_context(lambda c: c.track("x")):
            raise ValueError("inside")
        with portal.wrap_context(lambda c: c.track("y")):
            raise KeyError("suppressed by the async context manager")
    finally:
        portal.close()
    kinds = [e[0] for e in fake.events]
    assert kinds.count("enter") == 3
    assert kinds[-1] == "aclose"
    assert ("error", ValueError) in fake.events
    assert ("error", KeyError) in fake.events
    assert all(v for k, v in fake.events if k == "exit-same-task")

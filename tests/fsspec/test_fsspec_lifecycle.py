"""Clients, event loops, closing and pickling of the filesystem; fsspec as an optional import."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from labric import UsageError
from labric.fsspec import LabricFileSystem
from labric.fsspec.clients import close_open_pools
from labric.server import LocalServer, ThreadedServer

Upload = Callable[[str, bytes], str]

#: Only bounds a hung interpreter; each starts in about a second.
SUBPROCESS_TIMEOUT = 60


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


# -- optional dependency ------------------------------------------------------------------------


def test_importing_labric_does_not_import_fsspec() -> None:
    proc = run_python(
        """
        import sys
        import labric
        assert "fsspec" not in sys.modules, "labric imported fsspec"
        print("clean")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"


def test_without_fsspec_the_module_says_how_to_install_it() -> None:
    proc = run_python(
        """
        import sys
        sys.modules["fsspec"] = None  # as if it were not installed
        try:
            import labric.fsspec
        except ImportError as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'labric[fsspec]'" in proc.stdout


# -- pickling -------------------------------------------------------------------------------------


def test_pickle_carries_the_arguments_not_the_session(
    fs: LabricFileSystem, options: dict[str, str], root: str, upload: Upload
) -> None:
    upload(f"{root}/a.txt", b"pickled")
    assert fs.cat(f"{root}/a.txt") == b"pickled"  # a live client and session now exist
    data = pickle.dumps(fs)
    assert b"aiohttp" not in data
    assert b"ClientSession" not in data
    # In-process, fsspec's instance cache hands back the same filesystem...
    assert pickle.loads(data) is fs
    # ...and without it (as in a fresh worker) the arguments rebuild an equal one.
    LabricFileSystem.clear_instance_cache()
    rebuilt = pickle.loads(data)
    try:
        assert rebuilt is not fs
        assert rebuilt == fs
        assert rebuilt.storage_options == options
        assert rebuilt.cat(f"{root}/a.txt") == b"pickled"
    finally:
        rebuilt.close()


def test_an_asynchronous_filesystem_unpickles_as_a_blocking_one(
    options: dict[str, str], root: str, upload: Upload
) -> None:
    upload(f"{root}/a.txt", b"either way")
    fs = LabricFileSystem(**options, asynchronous=True, skip_instance_cache=True)
    rebuilt = pickle.loads(pickle.dumps(fs))
    try:
        assert rebuilt.asynchronous is False
        assert rebuilt.cat(f"{root}/a.txt") == b"either way"
    finally:
        rebuilt.close()
        LabricFileSystem.clear_instance_cache()


def test_a_fresh_interpreter_rebuilds_it_and_exits_cleanly_without_close(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    """What a Dask worker does: unpickle, read, and exit without anyone calling close()."""
    upload(f"{root}/worker.csv", b"a,b\n1,2\n")
    proc = run_python(
        f"""
        import pickle, sys
        fs = pickle.loads({pickle.dumps(fs)!r})
        print(fs.cat_file({root + "/worker.csv"!r}, start=4).decode(), end="")
        with fs.open({root + "/worker.csv"!r}) as f:
            print(f.readline().decode(), end="")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1,2\na,b\n"
    assert proc.stderr == ""  # nothing reported unclosed, no traceback at exit


def test_the_exit_hook_closes_clients_left_open_on_fsspecs_loop(
    options: dict[str, str], root: str, upload: Upload
) -> None:
    upload(f"{root}/a.txt", b"x")
    fs = LabricFileSystem(**options, skip_instance_cache=True)
    assert fs.exists(f"{root}/a.txt")
    [client] = fs._clients.values()
    close_open_pools()  # what atexit runs
    assert client.is_closed
    assert not fs._clients


# -- clients, loops, closing ------------------------------------------------------------------


def test_close_then_use_again_opens_a_new_client(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    upload(f"{root}/a.txt", b"still here")
    assert fs.cat(f"{root}/a.txt") == b"still here"
    fs.close()
    fs.close()  # twice is fine
    # fsspec's cache hands this same instance to later callers, so it must keep working.
    assert fs.cat(f"{root}/a.txt") == b"still here"


def test_with_block_closes(options: dict[str, str], root: str, upload: Upload) -> None:
    upload(f"{root}/a.txt", b"x")
    with LabricFileSystem(**options, skip_instance_cache=True) as fs:
        assert fs.exists(f"{root}/a.txt")
        assert fs._clients
    assert not fs._clients


async def test_asynchronous_use_on_the_callers_loop(server: LocalServer) -> None:
    fs = LabricFileSystem(
        server.admin_key, base_url=server.base_url, asynchronous=True, skip_instance_cache=True
    )
    async with fs:
        await fs._pipe_file("async/a.csv", b"x,y\n1,2\n")
        assert await fs._ls("async", detail=False) == ["async/a.csv"]
        assert await fs._cat_file("async/a.csv", start=4) == b"1,2\n"
        assert await fs._exists("async/a.csv")
        async with await fs.open_async("labric://async/a.csv") as f:
            assert f.size == 8
            assert await f.read(3) == b"x,y"
            f.seek(4)
            assert await f.read() == b"1,2\n"
        with pytest.raises(ValueError, match="reads only"):
            await fs.open_async("async/a.csv", "wb")
        assert list(fs._clients) == [asyncio.get_running_loop()]
        with pytest.raises(UsageError, match="aclose"):
            fs.close()  # blocking close from inside a loop is refused
    assert not fs._clients


def test_one_filesystem_used_from_two_loops(tserver: ThreadedServer) -> None:
    fs = LabricFileSystem(
        tserver.admin_key, base_url=tserver.base_url, asynchronous=True, skip_instance_cache=True
    )

    async def write() -> None:
        await fs._pipe_file("loops/a.txt", b"one loop")
        await fs.aclose()

    async def read() -> bytes:
        async with fs:
            return await fs._cat_file("loops/a.txt")

    asyncio.run(write())
    assert asyncio.run(read()) == b"one loop"  # a new loop gets a client of its own


def test_a_client_of_a_finished_loop_is_dropped_without_warnings(tserver: ThreadedServer) -> None:
    fs = LabricFileSystem(
        tserver.admin_key, base_url=tserver.base_url, asynchronous=True, skip_instance_cache=True
    )

    async def use() -> None:
        await fs._pipe_file("loops/b.txt", b"left open")

    asyncio.run(use())  # its loop ends with the client still open
    [stale_loop] = fs._clients
    assert stale_loop.is_closed()

    async def again() -> bytes:
        async with fs:
            return await fs._cat_file("loops/b.txt")

    assert asyncio.run(again()) == b"left open"
    assert not fs._clients


def test_blocking_calls_from_many_threads_share_one_client(
    fs: LabricFileSystem, root: str, upload: Upload
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for n in range(8):
        upload(f"{root}/{n}.txt", str(n).encode())
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda n: fs.cat(f"{root}/{n}.txt"), range(8)))
    assert got == [str(n).encode() for n in range(8)]
    assert len(fs._clients) == 1  # all ran on fsspec's IO loop


def test_blocking_open_on_an_asynchronous_filesystem_uses_fsspecs_loop(
    tserver: ThreadedServer, root: str, upload: Upload
) -> None:
    upload(f"{root}/a.txt", b"read from a plain thread")
    fs = LabricFileSystem(
        tserver.admin_key, base_url=tserver.base_url, asynchronous=True, skip_instance_cache=True
    )
    with fs.open(f"{root}/a.txt") as f:
        assert f.read() == b"read from a plain thread"
    with fs.open(f"{root}/b.txt", "wb") as f:
        f.write(b"and written")
    [client] = fs._clients.values()
    fs.close()  # from outside any loop: closed on the loop it belongs to
    assert client.is_closed
    with LabricFileSystem(
        tserver.admin_key, base_url=tserver.base_url, skip_instance_cache=True
    ) as check:
        assert check.cat(f"{root}/b.txt") == b"and written"

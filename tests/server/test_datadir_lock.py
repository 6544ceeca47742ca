"""One server per data directory, no silent initialisation, and no half-made directories.

Servers run as real processes (``labric serve``) and in-process (``LocalServer``) on sockets;
the lock is an OS ``flock``, so a killed server's lock goes with its process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from labric.cli import main
from labric.errors import LabricError
from labric.server import LocalServer
from labric.server.core.datadir import DataDirInUse, DataDirNotInitialised

from .test_cli import STARTUP_TIMEOUT, _finish, _serve


async def _status(base_url: str, key: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/v1/files", headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        return resp.status


async def _run_cli(*argv: str) -> tuple[int, str, str]:
    """``labric ARGV`` in a subprocess, to completion."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labric.cli",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


def _address(base_url: str) -> str:
    return base_url.removeprefix("http://").removesuffix("/api")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# -- the lock -------------------------------------------------------------------------------


async def test_a_second_local_server_is_refused_and_names_the_first(tmp_path: Path) -> None:
    async with LocalServer(tmp_path / "d") as first:
        second = LocalServer(tmp_path / "d")
        with pytest.raises(DataDirInUse) as caught:
            await second.start()
        assert isinstance(caught.value, LabricError)
        message = str(caught.value)
        assert f"127.0.0.1:{first.port}" in message
        assert f"pid {os.getpid()}" in message
        assert str(first.data_dir.root) in message
        # The refused start touched nothing: the first still serves.
        assert await _status(first.base_url, first.admin_key) == 200
    # Released on stop: the directory can be served again, with the same key.
    async with LocalServer(tmp_path / "d") as again:
        assert again.admin_key == first.admin_key
        assert await _status(again.base_url, again.admin_key) == 200


async def test_a_second_serve_process_exits_naming_the_first(tmp_path: Path) -> None:
    served = await _serve(tmp_path / "d")
    try:
        code, stdout, stderr = await _run_cli("serve", "--data-dir", str(tmp_path / "d"))
        assert code == 1, stderr
        assert stdout == ""
        assert stderr.count("\n") == 1
        assert stderr.startswith("labric: error: The data directory")
        assert f"at {_address(served.base_url)} (pid {served.proc.pid})" in stderr
        # And from Python, against the process.
        with pytest.raises(DataDirInUse, match=_address(served.base_url)):
            await LocalServer(tmp_path / "d").start()
        assert await _status(served.base_url, served.key) == 200
    finally:
        code, _, stderr = await _finish(served, signal.SIGTERM)
    assert code == 0, stderr
    # A clean stop clears the holder's details.
    assert (tmp_path / "d" / "server.lock").read_bytes() == b""


async def test_a_serve_process_is_refused_while_a_local_server_holds_the_dir(
    tmp_path: Path,
) -> None:
    async with LocalServer(tmp_path / "d") as first:
        code, _, stderr = await _run_cli("serve", "--data-dir", str(tmp_path / "d"))
        assert code == 1
        assert f"at 127.0.0.1:{first.port}" in stderr


async def test_a_killed_servers_lock_does_not_block_the_next_start(tmp_path: Path) -> None:
    served = await _serve(tmp_path / "d")
    lock_file = tmp_path / "d" / "server.lock"
    holder = json.loads(lock_file.read_text())
    assert holder == {"pid": served.proc.pid, "address": _address(served.base_url)}
    served.proc.kill()
    await asyncio.wait_for(served.proc.communicate(), STARTUP_TIMEOUT)
    assert json.loads(lock_file.read_text()) == holder  # stale details, but no lock
    async with LocalServer(tmp_path / "d") as again:
        assert again.admin_key == served.key
        assert json.loads(lock_file.read_text())["address"] == f"127.0.0.1:{again.port}"
    restarted = await _serve(tmp_path / "d")
    code, _, stderr = await _finish(restarted, signal.SIGINT)
    assert code == 0, stderr


async def test_keys_create_works_while_the_server_holds_the_lock(tmp_path: Path) -> None:
    async with LocalServer(tmp_path / "d") as server:
        code, stdout, stderr = await _run_cli(
            "keys", "create", "--data-dir", str(tmp_path / "d"), "--name", "k", "--scopes", "read"
        )
        assert code == 0, stderr
        assert await _status(server.base_url, stdout.strip()) == 200


# -- no silent initialisation -----------------------------------------------------------------


def test_keys_create_on_a_mistyped_dir_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "labirc-data"
    assert main(["keys", "create", "--data-dir", str(typo), "--name", "k", "--scopes", "read"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is not an initialised Labric data directory" in err
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["keys", "create", "--data-dir", str(empty), "--name", "k", "--scopes", "read"]) == 2
    )
    assert list(empty.iterdir()) == []


async def test_local_server_without_init_refuses_a_new_dir(tmp_path: Path) -> None:
    with pytest.raises(DataDirNotInitialised):
        await LocalServer(tmp_path / "new", init=False).start()
    assert not (tmp_path / "new").exists()
    async with LocalServer(tmp_path / "new"):
        pass
    async with LocalServer(tmp_path / "new", init=False) as server:
        assert await _status(server.base_url, server.admin_key) == 200


def test_serve_refuses_a_foreign_non_empty_dir_unless_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["serve", "--data-dir", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "is not a Labric data directory and is not empty" in err
    assert "--init" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


async def test_serve_with_init_takes_a_foreign_dir_and_an_empty_one_without(
    tmp_path: Path,
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    served = await _serve(tmp_path / "d", "--init")
    code, _, stderr = await _finish(served, signal.SIGTERM)
    assert code == 0, stderr
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"
    (tmp_path / "e").mkdir()
    served = await _serve(tmp_path / "e")
    code, _, stderr = await _finish(served, signal.SIGTERM)
    assert code == 0, stderr
    assert (tmp_path / "e" / "labric.db").is_file()


# -- a failed start leaves nothing behind -----------------------------------------------------


def test_serve_on_a_busy_port_leaves_no_directory(
    tmp_path: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "d"
    assert main(["serve", "--data-dir", str(data_dir), "--port", str(busy_port)]) == 1
    assert f"cannot listen on 127.0.0.1:{busy_port}" in capsys.readouterr().err
    assert not data_dir.exists()
    data_dir.mkdir()
    assert main(["serve", "--data-dir", str(data_dir), "--port", str(busy_port)]) == 1
    assert list(data_dir.iterdir()) == []


async def test_a_serve_process_on_a_busy_port_leaves_no_directory(
    tmp_path: Path, busy_port: int
) -> None:
    code, _, stderr = await _run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--port", str(busy_port)
    )
    assert code == 1
    assert "cannot listen" in stderr
    assert not (tmp_path / "d").exists()


async def test_a_failed_restart_keeps_an_initialised_dir(tmp_path: Path, busy_port: int) -> None:
    async with LocalServer(tmp_path / "d") as first:
        key = first.admin_key
    with pytest.raises(OSError):
        await LocalServer(tmp_path / "d", port=busy_port).start()
    async with LocalServer(tmp_path / "d") as again:
        assert again.admin_key == key

"""The ``labric`` command: ``serve`` as a real subprocess, ``keys create``, and its errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from labric.cli import main, parse_size
from labric.server import LocalServer

STARTUP_TIMEOUT = 60.0


class Served:
    """A ``labric serve`` subprocess and the three lines it printed."""

    def __init__(
        self, proc: asyncio.subprocess.Process, base_url: str, key: str, console_url: str
    ) -> None:
        self.proc = proc
        self.base_url = base_url
        self.key = key
        self.console_url = console_url


async def _serve(data_dir: Path, *extra: str) -> Served:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labric.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.stdout is not None
    lines = []
    for _ in range(3):
        line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT)
        lines.append(line.decode().rstrip("\n"))
    name, _, base_url = lines[0].partition("=")
    assert name == "LABRIC_API_BASE_URL", lines
    name, _, key = lines[1].partition("=")
    assert name == "LABRIC_API_KEY", lines
    name, _, console_url = lines[2].partition("=")
    assert name == "LABRIC_CONSOLE_URL", lines
    return Served(proc, base_url, key, console_url)


async def _finish(served: Served, sig: int) -> tuple[int, str, str]:
    served.proc.send_signal(sig)
    stdout, stderr = await asyncio.wait_for(served.proc.communicate(), STARTUP_TIMEOUT)
    assert served.proc.returncode is not None
    return served.proc.returncode, stdout.decode(), stderr.decode()


async def _get(base_url: str, key: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/v1/files", headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        return resp.status


async def test_serve_prints_credentials_and_stops_on_sigint(tmp_path: Path) -> None:
    served = await _serve(tmp_path / "d", "--part-size", "1MiB", "--faults", "latency_ms=1")
    try:
        assert served.base_url.startswith("http://127.0.0.1:")
        assert served.base_url.endswith("/api")
        assert served.key.startswith("lbk_")
        assert await _get(served.base_url, served.key) == 200
        assert await _get(served.base_url, "lbk_wrong_key") == 401
        origin = served.base_url.removesuffix("/api")
        assert served.console_url.startswith(f"{origin}/?token=")
        assert served.key not in served.console_url
        async with (
            aiohttp.ClientSession() as session,
            session.get(served.console_url, allow_redirects=False) as resp,
        ):
            assert resp.status == 303
            assert resp.headers["Location"] == "/console/"
            assert "HttpOnly" in resp.headers["Set-Cookie"]
    finally:
        code, stdout, stderr = await _finish(served, signal.SIGINT)
    assert code == 0, stderr
    assert stdout == ""  # nothing after the three lines
    assert "Traceback" not in stderr
    assert (tmp_path / "d" / "admin.key").read_text() == served.key


async def test_serve_can_raise_the_single_put_cap(tmp_path: Path) -> None:
    served = await _serve(tmp_path / "d", "--max-single-put", "600MiB")
    try:
        headers = {"Authorization": f"Bearer {served.key}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{served.base_url}/v1/job-executions", headers=headers) as resp,
        ):
            execution = (await resp.json())["job_execution_id"]
            body = {"file_name": "big.bin", "job_execution_id": execution}
            async with session.post(
                f"{served.base_url}/v1/files/upload-url", json=body, headers=headers
            ) as resp:
                ticket = await resp.json()
    finally:
        code, _, stderr = await _finish(served, signal.SIGINT)
    assert code == 0, stderr
    assert ticket["headers"]["x-goog-content-length-range"] == f"0,{600 * 1024 * 1024}"


async def test_keys_create_works_alongside_a_running_server(tmp_path: Path) -> None:
    served = await _serve(tmp_path / "d")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "labric.cli",
            "keys",
            "create",
            "--data-dir",
            str(tmp_path / "d"),
            "--scopes",
            "read",
            "--org",
            "lab",
            "--name",
            "lab reader",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
        assert proc.returncode == 0, stderr
        key = stdout.decode().strip()
        assert key.startswith("lbk_")
        assert "\n" not in key
        assert await _get(served.base_url, key) == 200
    finally:
        code, _, stderr = await _finish(served, signal.SIGTERM)
    assert code == 0, stderr


async def test_keys_create_on_an_initialised_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "fresh"
    async with LocalServer(data_dir):
        pass
    assert (
        main(
            [
                "keys",
                "create",
                "--data-dir",
                str(data_dir),
                "--name",
                "rw",
                "--scopes",
                "read,write",
            ]
        )
        == 0
    )
    key = capsys.readouterr().out.strip()
    expiring = ["--expires-in", "3600", "--org", "lab", "--name", "temp"]
    assert main(["keys", "create", "--data-dir", str(data_dir), "--scopes", "read", *expiring]) == 0
    lab_key = capsys.readouterr().out.strip()
    async with LocalServer(data_dir) as srv:
        assert await _get(srv.base_url, key) == 200
        assert await _get(srv.base_url, lab_key) == 200
        assert srv.admin_key != key


@pytest.mark.parametrize(
    ("argv", "message", "code"),
    [
        (
            ["keys", "create", "--data-dir", "{d}", "--name", "k", "--scopes", "read,root"],
            "labric: error: --scopes: unknown scope",
            2,
        ),
        (
            [
                *["keys", "create", "--data-dir", "{d}", "--name", "k", "--scopes", "read"],
                *["--expires-in", "0"],
            ],
            "labric: error: --expires-in must be positive",
            2,
        ),
        (
            ["serve", "--data-dir", "{d}", "--faults", "errors=1"],
            "labric: error: --faults: unknown fault setting",
            1,
        ),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str, code: int
) -> None:
    argv = [a.replace("{d}", str(tmp_path / "d")) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


async def test_serve_reports_a_busy_port(tmp_path: Path, server: LocalServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labric.cli",
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--port",
        str(server.port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT)
    assert proc.returncode == 1
    assert stdout == b""
    assert stderr.decode().startswith(f"labric: error: cannot listen on 127.0.0.1:{server.port}")


async def test_serve_takes_the_notification_caps(tmp_path: Path) -> None:
    served = await _serve(
        tmp_path / "d", "--notifications-per-hour", "1", "--notifications-per-day", "5"
    )
    statuses = []
    try:
        headers = {"Authorization": f"Bearer {served.key}"}
        async with aiohttp.ClientSession() as session:
            for key in ("first", "second"):
                body = {"title": "x", "dedupe_key": key}
                async with session.post(
                    f"{served.base_url}/v1/notifications", json=body, headers=headers
                ) as resp:
                    statuses.append((resp.status, resp.headers.get("Retry-After")))
    finally:
        code, _, stderr = await _finish(served, signal.SIGINT)
    assert code == 0, stderr
    assert statuses[0] == (200, None)
    assert statuses[1][0] == 429
    assert int(statuses[1][1] or 0) > 0


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_notification_caps_must_be_positive(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["serve", "--data-dir", str(tmp_path / "d"), "--notifications-per-day", value])
    assert excinfo.value.code == 2
    assert "--notifications-per-day" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["serve"])
    assert excinfo.value.code == 2
    assert "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


def test_parse_size() -> None:
    assert parse_size("1024") == 1024
    assert parse_size("16MiB") == 16 * 1024 * 1024
    assert parse_size("2k") == 2048
    assert parse_size("1G") == 1024**3
    with pytest.raises(Exception, match="not a size"):
        parse_size("lots")

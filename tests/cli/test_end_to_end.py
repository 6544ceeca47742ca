"""The ``labric`` command as a user runs it: a subprocess with the environment variables set.

Covers the one-line errors and their exit codes (bad key, no key, unreachable server, not found),
piped output without progress bars, and Ctrl-C during a transfer (exit 130, then resumed by
running the same command again).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from labric import Labric, TransferConfig
from labric.server import FaultConfig, ThreadedServer

from ._support import COMMAND_TIMEOUT, call, make_tree, run_labric

RUN = {
    f"plate_{p}/read_{r}.csv": f"well,od\nA1,0.{p}{r}\n".encode()
    for p in range(3)
    for r in range(4)
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_upload_list_download_round_trip_piped(
    server: ThreadedServer, env: dict[str, str], tmp_path: Path
) -> None:
    run = make_tree(tmp_path / "run1", RUN)
    up = run_labric("files", "upload", str(run), "--concurrency", "4", env=env)
    assert up.code == 0, up.err
    assert len(up.out.splitlines()) == len(RUN)
    # Piped: plain progress lines and a summary, never a bar redrawn with \r or escape codes.
    assert "\r" not in up.err
    assert "\x1b" not in up.err
    assert up.err_lines[0].startswith("upload ")
    assert up.err_lines[-1].startswith(f"upload: {len(RUN)} uploaded")

    listed = run_labric("files", "ls", "--json", env=env)
    assert listed.code == 0, listed.err
    assert listed.err == ""
    ids = [f["file_id"] for f in listed.json()]
    assert len(ids) == len(RUN)

    down = run_labric("files", "download", *ids, "-o", str(tmp_path / "back"), "--json", env=env)
    assert down.code == 0, down.err
    assert down.json()["summary"]["ok"] == len(RUN)
    for rel, data in RUN.items():
        assert (tmp_path / "back" / "run1" / rel).read_bytes() == data


def test_a_bad_key_is_one_line_and_exit_3(server: ThreadedServer) -> None:
    bad = {"LABRIC_API_KEY": "lbk_nobody_000000000000", "LABRIC_API_BASE_URL": server.base_url}
    done = run_labric("files", "ls", env=bad)
    assert done.code == 3
    assert done.out == ""
    [line] = done.err_lines
    assert line.startswith("labric: error: 401 Invalid API key (GET /api/v1/files)")
    assert line.endswith("; check LABRIC_API_KEY")
    assert "000000000000" not in done.err  # the key's secret is never shown


@pytest.mark.parametrize(
    "argv",
    [
        ["files", "upload", "{run}"],
        ["files", "download", "some-id", "-o", "{run}"],
        ["files", "rm", "some-id"],
        ["sync", "up", "{run}"],
        ["sync", "down", "{run}"],
        ["datasets", "ls"],
        ["datasets", "query", "SELECT 1"],
        ["datasets", "rows", "samples"],
        ["jobs", "ls"],
        ["jobs", "run", "some-job", "--wait"],
        ["jobs", "logs", "some-execution"],
    ],
)
def test_every_subcommand_reports_a_bad_key_the_same_way(
    server: ThreadedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    run = make_tree(tmp_path / "run1", {"a.csv": b"a\n"})
    monkeypatch.setenv("LABRIC_API_KEY", "lbk_nobody_000000000000")
    monkeypatch.setenv("LABRIC_API_BASE_URL", server.base_url)
    done = call(capsys, *(a.replace("{run}", str(run)) for a in argv))
    assert done.code == 3
    # Exactly one error line (a transfer may have drawn its progress line before it).
    [line] = [x for x in done.err_lines if x.startswith("labric: error: ")]
    assert "401 Invalid API key" in line
    assert "000000000000" not in done.err


def test_no_key_is_a_configuration_error(server: ThreadedServer) -> None:
    done = run_labric(
        "files", "ls", env={"LABRIC_API_KEY": "", "LABRIC_API_BASE_URL": server.base_url}
    )
    assert done.code == 3
    assert done.err == (
        "labric: error: No API key: set the LABRIC_API_KEY environment variable (or in a file "
        "named by LABRIC_ENV_FILE); for a local server, `labric serve` prints one and "
        "`labric env --data-dir DIR` prints it again\n"
    )


def test_a_malformed_base_url_is_a_configuration_error(server: ThreadedServer) -> None:
    done = run_labric(
        "datasets",
        "ls",
        env={"LABRIC_API_KEY": server.admin_key, "LABRIC_API_BASE_URL": "ftp://example.com"},
    )
    assert done.code == 3
    assert done.err.startswith("labric: error: LABRIC_API_BASE_URL must be")
    assert done.err.count("\n") == 1


def test_an_unreachable_server_is_one_line_and_exit_5(server: ThreadedServer) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api"
    done = run_labric(
        "files", "info", "x", env={"LABRIC_API_KEY": server.admin_key, "LABRIC_API_BASE_URL": url}
    )
    assert done.code == 5
    assert done.err.count("\n") == 1
    assert done.err.startswith("labric: error: Could not connect to 127.0.0.1:")
    assert done.err.rstrip().endswith(f"is the server at {url} running (LABRIC_API_BASE_URL)?")


def test_not_found_exit_4_and_debug_shows_the_traceback(
    server: ThreadedServer, env: dict[str, str]
) -> None:
    done = run_labric("files", "info", "no-such-file", env=env)
    assert done.code == 4
    assert done.err.count("\n") == 1
    assert done.err.startswith("labric: error: 404 File no-such-file not found")
    debug = run_labric("files", "info", "no-such-file", "--debug", env=env)
    assert debug.code == 4
    assert "Traceback (most recent call last)" in debug.err
    assert "labric.errors.NotFoundError" in debug.err
    assert debug.err_lines[-1].startswith("labric: error: 404 File no-such-file not found")


def _upload_status(srv: ThreadedServer, file_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{srv.base_url}/v1/files/{file_id}/upload-status",
        headers={"Authorization": f"Bearer {srv.admin_key}"},
    )
    with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT) as resp:
        status: dict[str, Any] = json.load(resp)
    return status


def _multipart_upload(srv: ThreadedServer) -> str | None:
    """The id of the one file whose parts the server has been sent, once it has any."""
    by_file = srv.stats["storage"]["part_puts_by_file"]
    assert len(by_file) <= 1, by_file  # only raw.bin is larger than a part
    return next(iter(by_file), None)


def test_ctrl_c_stops_an_upload_and_rerunning_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only files of at least the multipart threshold go up in parts, and only parts resume: a
    # smaller file is sent again whole. Storage is slowed to 512 KiB/s per request, one request
    # at a time, so a 1 MiB part takes about two seconds: the interrupt surely lands while
    # raw.bin is partly stored.
    slow = FaultConfig(bandwidth=512 * 1024, scope="storage")
    part_size = 1024 * 1024
    size = TransferConfig().multipart_threshold
    parts = -(-size // part_size)
    with ThreadedServer(tmp_path / "server", part_size=part_size, faults=slow) as srv:
        env = {
            "LABRIC_API_KEY": srv.admin_key,
            "LABRIC_API_BASE_URL": srv.base_url,
            # The resume journals of both runs, kept out of the user's own cache.
            "HOME": str(tmp_path / "home"),
        }
        run = make_tree(tmp_path / "big", {"raw.bin": os.urandom(size), **RUN})
        # Python's usual SIGINT handler, even if the suite was started with SIGINT ignored (as a
        # background job is): the interrupt is what this test is about.
        interruptible = (
            "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from labric.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                interruptible,
                *("files", "upload", str(run), "--concurrency", "1"),
            ],
            env={**os.environ, "PYTHONWARNINGS": "error", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first progress line: the transfer has begun
        assert first.startswith("upload "), first
        # Interrupt once the server holds two parts of raw.bin (and far from all of them: a part
        # takes seconds), so the rerun has something to skip and something to send.
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            while True:
                file_id = _multipart_upload(srv)
                if file_id is not None and len(_upload_status(srv, file_id)["parts"]) >= 2:
                    break
                assert proc.poll() is None, "the upload ended before two parts were stored"
                assert time.monotonic() < deadline, "two parts of raw.bin were never stored"
                time.sleep(0.05)  # a poll interval; the condition is the server's own record
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=COMMAND_TIMEOUT)
        assert proc.returncode == 130, first + rest
        assert "Traceback" not in rest
        assert rest.splitlines()[-1] == (
            "labric: interrupted; rerun the same command to resume "
            "(files already confirmed are not sent again)"
        )
        status = _upload_status(srv, file_id)
        assert status["status"] == "pending"
        stored = {p["number"] for p in status["parts"]}
        assert 2 <= len(stored) < parts, stored

        srv.faults.update(FaultConfig())
        srv.reset_stats()
        again = run_labric("files", "upload", str(run), "--json", env=env)
        assert again.code == 0, again.err
        entries = again.json()["files"]
        assert all(e["ok"] for e in entries)
        raw = next(e for e in entries if e["name"] == "big/raw.bin")
        assert raw["file_id"] == file_id  # the interrupted upload, resumed
        # What the server received on the rerun: only parts it lacked, each once. (The part cut
        # off by the interrupt may still land after ``stored`` was read, so it may or may not be
        # sent again, and its request may still be draining when the counters are zeroed: one
        # part's worth of slack, no more.)
        storage = srv.stats["storage"]
        resent = storage["part_puts_by_file"][file_id]
        assert not {int(n) for n in resent} & stored
        assert all(count == 1 for count in resent.values())
        missing = (parts - len(stored)) * part_size
        received = storage["bytes_received_by_file"][file_id]
        assert missing - part_size <= received <= missing + part_size
        assert received < size
        with Labric(srv.admin_key, base_url=srv.base_url) as client:
            assert client.files.read_bytes(raw["file_id"]) == (run / "raw.bin").read_bytes()


def test_a_terminal_gets_a_progress_bar(
    server: ThreadedServer, env: dict[str, str], tmp_path: Path
) -> None:
    run = make_tree(tmp_path / "run1", RUN)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labric.cli", "files", "upload", str(run)],
        env={**os.environ, "PYTHONWARNINGS": "error", "COLUMNS": "100", **env},
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], COMMAND_TIMEOUT)
        if not ready:
            proc.kill()
            pytest.fail(f"no output for {COMMAND_TIMEOUT} s; so far: {seen!r}")
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    out, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
    assert proc.returncode == 0
    assert len(out.splitlines()) == len(RUN)  # stdout stays clean: one line per file
    text = seen.decode()
    assert "\r" in text
    assert f"[########################] 100%  {len(RUN)}/{len(RUN)} files" in text

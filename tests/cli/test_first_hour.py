"""A new user's first hour: .env files, ``labric env``, fast start-up, clear errors, short reprs."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labric import AsyncLabric, Labric
from labric._core.config import ClientConfig, read_env_file
from labric.errors import ConfigurationError
from labric.server import ThreadedServer
from tests.cli._support import call
from tests.server.test_cli import _finish, _serve

ROOT = Path(__file__).resolve().parents[2]


# -- 1. .env files, opt-in ----------------------------------------------------------------------


def _write_env(path: Path, server: ThreadedServer) -> Path:
    path.write_text(
        "# printed by labric serve\n"
        f"LABRIC_API_BASE_URL={server.base_url}\n"
        f"export LABRIC_API_KEY='{server.admin_key}'\n\n"
    )
    return path


def test_env_file_is_read_when_named(
    server: ThreadedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABRIC_API_KEY", raising=False)
    monkeypatch.delenv("LABRIC_API_BASE_URL", raising=False)
    env_file = _write_env(tmp_path / ".env", server)
    with Labric(env_file=env_file) as client:
        assert client.base_url == server.base_url
        assert list(client.files.list(limit=1)) == []
    monkeypatch.setenv("LABRIC_ENV_FILE", str(env_file))
    assert AsyncLabric().base_url == server.base_url


def test_env_file_never_overrides_the_environment(
    server: ThreadedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = _write_env(tmp_path / ".env", server)
    monkeypatch.setenv("LABRIC_API_BASE_URL", "http://127.0.0.1:1/api")
    config = ClientConfig.resolve(env_file=env_file)
    assert config.base_url == "http://127.0.0.1:1/api"
    assert config.api_key == server.admin_key


def test_dot_env_is_not_read_unless_named(
    server: ThreadedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write_env(tmp_path / ".env", server)
    with pytest.raises(ConfigurationError) as caught:
        ClientConfig.resolve(env={})
    message = str(caught.value)
    assert "\n" not in message
    assert "LABRIC_API_KEY" in message
    assert "LABRIC_ENV_FILE" in message
    assert "./.env holds LABRIC_API_KEY but is not read unless named" in message


def test_env_file_reader_is_strict_and_never_echoes_a_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\nlbk_secret_value\n")
    with pytest.raises(ConfigurationError, match="line 2 is not KEY=value") as caught:
        read_env_file(bad)
    assert "lbk_secret_value" not in str(caught.value)
    (tmp_path / "q.env").write_text("A=\"x y\"\nB='z'\nC=\n")
    assert read_env_file(tmp_path / "q.env") == {"A": "x y", "B": "z", "C": ""}
    (tmp_path / "open.env").write_text('A="x\n')
    with pytest.raises(ConfigurationError, match="unclosed quote"):
        read_env_file(tmp_path / "open.env")
    with pytest.raises(ConfigurationError, match="Cannot read the env file"):
        ClientConfig.resolve(env={"LABRIC_ENV_FILE": str(tmp_path / "missing.env")})


def test_the_cli_reads_the_env_file_named_in_the_environment(
    server: ThreadedServer, tmp_path: Path
) -> None:
    env_file = _write_env(tmp_path / "labric.env", server)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABRIC_")}
    proc = subprocess.run(
        [sys.executable, "-m", "labric.cli", "files", "ls", "--json"],
        env={**clean, "LABRIC_ENV_FILE": str(env_file), "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_cli_names_what_to_set_without_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LABRIC_API_KEY", raising=False)
    monkeypatch.delenv("LABRIC_ENV_FILE", raising=False)
    done = call(capsys, "files", "ls")
    assert done.code == 3
    assert len(done.err_lines) == 1
    assert "set the LABRIC_API_KEY environment variable" in done.err
    assert "labric env --data-dir DIR" in done.err


async def test_labric_env_prints_export_lines_for_a_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "labric-data"
    served = await _serve(data_dir)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "labric.cli",
            "env",
            "--data-dir",
            str(data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err
        assert out.decode().splitlines() == [
            f"export LABRIC_API_BASE_URL={served.base_url}",
            f"export LABRIC_API_KEY={served.key}",
        ]
        # eval "$(labric env ...)" in a real shell gives the same values.
        shell = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            'eval "$1"; printf "%s\\n" "$LABRIC_API_BASE_URL"',
            "sh",
            out.decode(),
            stdout=asyncio.subprocess.PIPE,
        )
        echoed, _ = await asyncio.wait_for(shell.communicate(), 60)
        assert echoed.decode().strip() == served.base_url
    finally:
        code, _, stderr = await _finish(served, signal.SIGINT)
    assert code == 0, stderr


def test_labric_env_without_a_server_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    done = call(capsys, "env", "--data-dir", str(tmp_path))
    assert done.code == 1
    assert "no labric server is running on" in done.err
    assert done.out == ""


# -- 8. a data directory made by serve is ignored by git ----------------------------------------


async def test_serve_writes_a_gitignore_into_a_directory_it_creates(tmp_path: Path) -> None:
    made = tmp_path / "labric-data"
    served = await _serve(made)
    code, _, stderr = await _finish(served, signal.SIGINT)
    assert code == 0, stderr
    assert (made / ".gitignore").read_text().splitlines()[-1] == "*"
    # A directory the user hands over with --init is theirs: no .gitignore appears in it.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    served = await _serve(theirs, "--init")
    code, _, stderr = await _finish(served, signal.SIGINT)
    assert code == 0, stderr
    assert not (theirs / ".gitignore").exists()


def test_the_repository_ignores_the_readme_data_directory() -> None:
    assert "labric-data/" in (ROOT / ".gitignore").read_text().splitlines()


# -- 9. start-up cost ---------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
    )
    return set(proc.stdout.split())


def test_import_labric_does_not_import_aiohttp() -> None:
    loaded = _modules_after("import labric")
    assert "aiohttp" not in loaded
    assert "labric._transfer" not in loaded
    assert "labric.server" not in loaded


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_the_command_answers_version_and_help_without_aiohttp(flag: str) -> None:
    code = (
        "import contextlib, io, sys\n"
        "from labric.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main([{flag!r}])"
    )
    loaded = _modules_after(code)
    assert "labric.cli" in loaded
    assert "aiohttp" not in loaded
    assert "asyncio" not in loaded
    assert "labric._client" not in loaded
    assert "labric.server" not in loaded


def test_lazy_names_resolve_and_all_is_complete() -> None:
    import labric

    for name in labric.__all__:
        assert getattr(labric, name) is not None
    assert set(labric.__all__) <= set(dir(labric))
    with pytest.raises(AttributeError, match="no_such_name"):
        labric.no_such_name  # noqa: B018


# -- 3. a base URL without /api, and plain http from the command line ---------------------------


def test_a_404_from_a_base_url_without_api_says_what_was_meant(server: ThreadedServer) -> None:
    from labric.errors import NotFoundError

    origin = server.base_url.removesuffix("/api")
    with (
        Labric(server.admin_key, base_url=origin) as client,
        pytest.raises(NotFoundError) as caught,
    ):
        list(client.files.list(limit=1))
    assert f"did you mean {origin}/api?" in str(caught.value)
    # A real missing object under the right base URL gets no such hint.
    with (
        Labric(server.admin_key, base_url=server.base_url) as client,
        pytest.raises(NotFoundError) as caught,
    ):
        client.files.get("f_missing")
    assert "did you mean" not in str(caught.value)


def test_the_cli_offers_allow_insecure_for_plain_http(
    server: ThreadedServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0.0.0.0 is not a loopback address to the check, yet Linux connects it to this machine.
    insecure = server.base_url.replace("127.0.0.1", "0.0.0.0")
    monkeypatch.setenv("LABRIC_API_KEY", server.admin_key)
    monkeypatch.setenv("LABRIC_API_BASE_URL", insecure)
    monkeypatch.delenv("LABRIC_ALLOW_INSECURE", raising=False)
    done = call(capsys, "files", "ls")
    assert done.code == 3
    assert "--allow-insecure" in done.err
    assert "allow_insecure=True" not in done.err
    assert call(capsys, "files", "ls", "--allow-insecure").code == 0
    monkeypatch.setenv("LABRIC_ALLOW_INSECURE", "1")
    assert call(capsys, "files", "ls").code == 0


# -- 6. help, and keys as on the platform --------------------------------------------------------


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from labric.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ("files", "ls"),
        ("files", "rm"),
        ("files", "info"),
        ("files", "upload"),
        ("datasets", "rows"),
        ("datasets", "query"),
        ("jobs", "ls"),
        ("jobs", "logs"),
        ("jobs", "runs"),
        ("sync", "up"),
    ],
)
def test_each_subcommand_has_its_own_description(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    text = _help(capsys, *command)
    assert "--api-key" not in text
    assert "shell history" not in text
    description = text.split("\n\n")[1]
    assert description.strip()
    assert not description.startswith("options")


def test_the_api_key_paragraph_is_said_once_at_the_top(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    assert text.count("no --api-key option") == 1
    assert "LABRIC_ENV_FILE" in text


def test_query_help_shows_the_placeholder_and_demo_its_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    query = _help(capsys, "datasets", "query")
    assert "%%s" not in query
    assert "%s placeholders" in query
    demo = _help(capsys, "demo")
    for default in ("(default 24)", "(default 12)", "(default 256)"):
        assert default in demo


async def _http_status(base_url: str, key: str) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/v1/files", headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        return resp.status


async def test_keys_are_named_listed_without_secrets_and_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from labric.cli import main
    from labric.server import LocalServer

    data_dir = tmp_path / "d"
    async with LocalServer(data_dir):
        pass
    argv = ["keys", "create", "--data-dir", str(data_dir), "--scopes", "read"]
    capsys.readouterr()
    assert main([*argv, "--name", "plate reader 3"]) == 0
    key = capsys.readouterr().out.strip()
    prefix = key.split("_")[1]
    async with LocalServer(data_dir) as srv:
        assert await _http_status(srv.base_url, key) == 200
        assert main(["keys", "list", "--data-dir", str(data_dir)]) == 0
        table = capsys.readouterr().out
        assert main(["keys", "list", "--data-dir", str(data_dir), "--json"]) == 0
        listed = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
        assert key.split("_")[2] not in table
        assert f"lbk_{prefix}_…" in table
        assert "plate reader 3" in table
        mine = listed["plate reader 3"]
        assert mine["prefix"] == f"lbk_{prefix}_…"
        assert mine["scopes"] == ["read"]
        assert mine["state"] == "active"
        assert mine["last_used_at"] is not None
        assert main(["keys", "revoke", "--data-dir", str(data_dir), f"lbk_{prefix}_…"]) == 0
        assert capsys.readouterr().out.strip() == f"revoked lbk_{prefix}_…"
        assert await _http_status(srv.base_url, key) == 401
    assert main(["keys", "revoke", "--data-dir", str(data_dir), "nosuchprefix"]) == 4
    assert main(["keys", "list", "--data-dir", str(data_dir), "--json"]) == 0
    states = {k["name"]: k["state"] for k in json.loads(capsys.readouterr().out)}
    assert states["plate reader 3"] == "revoked"


def test_keys_create_needs_a_name_and_known_scopes_as_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labric.cli import main

    with pytest.raises(SystemExit) as done:
        main(["keys", "create", "--data-dir", str(tmp_path), "--scopes", "read"])
    assert done.value.code == 2
    argv = ["keys", "create", "--data-dir", str(tmp_path), "--name", "x"]
    assert main([*argv, "--scopes", "superuser"]) == 2
    assert "unknown scope 'superuser'" in capsys.readouterr().err


# -- 7. exit codes and messages -----------------------------------------------------------------


def test_jobs_runs_lists_a_jobs_executions(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with Labric() as client:
        job = client.jobs.create(name="tick", code="print('tick')\n")
        other = client.jobs.create(name="other", code="print('other')\n")
    ran = [call(capsys, "jobs", "run", "tick", "--wait").out.split()[0] for _ in range(2)]
    call(capsys, "jobs", "run", other.id, "--wait")
    done = call(capsys, "jobs", "runs", "tick", "--json")
    assert done.code == 0, done.err
    listed = done.json()
    assert [e["job_execution_id"] for e in listed] == ran[::-1]
    assert {e["job_id"] for e in listed} == {job.id}
    human = call(capsys, "jobs", "runs", job.id, "--limit", "1")
    header, *rows = human.out.splitlines()
    assert header.split() == ["EXECUTION", "STATUS", "EXIT", "STARTED", "COMPLETED"]
    assert [row.split()[:3] for row in rows] == [[ran[1], "completed", "0"]]
    assert call(capsys, "jobs", "runs", "no-such-job").code == 4


def test_a_read_only_key_upload_names_the_files_and_the_missing_scope(
    server: ThreadedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LABRIC_API_KEY", server.create_key(["read"]))
    monkeypatch.setenv("LABRIC_API_BASE_URL", server.base_url)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    done = call(capsys, "files", "upload", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    assert done.code == 3
    assert done.err_lines == [
        "labric: error: could not upload 2 files (a.txt, b.txt): the key in LABRIC_API_KEY "
        "lacks the write scope (it may be a read-only key)"
    ]
    assert "job-executions" not in done.err


def test_upload_name_and_no_rate_for_unchanged_files(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labric.cli.progress import ProgressBar

    (tmp_path / "a.txt").write_text("a" * 1000)
    done = call(capsys, "files", "upload", str(tmp_path / "a.txt"), "--name", "runs/7/a.txt")
    assert done.code == 0, done.err
    assert done.out.split("\t")[1].strip() == "runs/7/a.txt"
    two = call(capsys, "files", "upload", str(tmp_path / "a.txt"), "a.txt", "--name", "x")
    assert two.code == 2
    assert "--name names one file" in two.err
    # Unchanged: skipped, and the progress lines show no rate for bytes that were never sent.
    out = io.StringIO()
    with Labric() as client:
        [outcome] = client.files.upload_many(
            [("runs/7/a.txt", tmp_path / "a.txt")],
            skip_existing=True,
            on_progress=ProgressBar(out, tty=False),
        )
    assert outcome.skipped
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("upload    1/1 files  1000 B")
    assert "/s" not in last

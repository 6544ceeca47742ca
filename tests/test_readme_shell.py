"""Every shell block in the README runs as a reader would type it, and its results are checked.

Each ``sh``/``shell`` block is claimed by exactly one scenario below (by a command only it
contains); a new block without a scenario fails ``test_every_shell_block_has_a_scenario``. The
blocks run under ``bash -euo pipefail`` in a scratch directory, so any command that fails fails
the test. Only two things are stood in for:

* installing into ``.venv``: the scratch directory's ``.venv/bin`` forwards ``labric`` and
  ``python`` to this environment, and records ``python3 -m venv``, ``pip install`` and
  ``python -m nox`` instead of running them (the test checks that ``.ci/run`` runs those same
  commands, which is where they really run);
* ``lbk_...`` in a command: the key of the server the scenario started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import Labric
from labric.server import LocalServer, ThreadedServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELL_BLOCKS = [m.group(1) for m in re.finditer(r"```(?:sh|shell|bash)\n(.*?)```", README, re.S)]
BIN = Path(sys.executable).parent
#: Only bounds a hung command.
TIMEOUT = 300.0


def block_with(command: str) -> str:
    """The one shell block that contains ``command``."""
    found = [block for block in SHELL_BLOCKS if command in block]
    assert len(found) == 1, f"{len(found)} README shell blocks contain {command!r}"
    return found[0]


def commands(block: str) -> list[str]:
    """The block's command lines (comments and blank lines dropped, trailing comments cut)."""
    lines = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            lines.append(line)
    return lines


def write_script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A scratch directory whose ``.venv`` forwards to this environment and records installs."""
    work = tmp_path / "work"
    venv_bin = work / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    shims = tmp_path / "shims"
    shims.mkdir()
    log = tmp_path / "installs.log"
    record = f'echo "$(basename "$0") $*" >> {shlex.quote(str(log))}'
    write_script(venv_bin / "labric", f'exec {shlex.quote(str(BIN / "labric"))} "$@"\n')
    write_script(venv_bin / "pip", f"{record}\n")
    write_script(
        venv_bin / "python",
        f'if [ "$1 $2" = "-m nox" ]; then {record}; exit 0; fi\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n',
    )
    write_script(
        shims / "python3",
        f'if [ "$1 $2" = "-m venv" ]; then {record}; exit 0; fi\n'
        f'exec {shlex.quote(sys.executable)} "$@"\n',
    )
    return work


def shell_env(sandbox: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABRIC_")}
    shims = sandbox.parent / "shims"
    env["PATH"] = os.pathsep.join([str(shims), str(sandbox / ".venv" / "bin"), env["PATH"]])
    env["PYTHONWARNINGS"] = "error"
    env.update(extra)
    return env


def run_block(block: str, sandbox: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=sandbox,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_every_shell_block_has_a_scenario() -> None:
    claimed = [block_with(marker) for marker in SCENARIO_MARKERS]
    unclaimed = [block for block in SHELL_BLOCKS if block not in claimed]
    assert not unclaimed, f"README shell blocks no test runs: {unclaimed}"


def test_install_block_runs_the_demo_and_ci_runs_the_same_commands(sandbox: Path) -> None:
    block = block_with("labric demo")
    done = run_block(block, sandbox, shell_env(sandbox))
    # The demo's own verdict: every file uploaded, downloaded and compared, then "OK".
    assert done.stdout.rstrip().endswith("OK"), done.stdout
    assert re.search(r"files\s+\d+ uploaded, downloaded and verified", done.stdout)
    installs = (sandbox.parent / "installs.log").read_text().splitlines()
    assert "python3 -m venv .venv" in installs
    assert "pip install -q -e ." in installs
    assert "pip install -q -e .[dev]" in installs
    assert "python -m nox -s check" in installs
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'" in ci
    assert ".venv/bin/python -m nox -s check" in ci


def shown_lines() -> list[str]:
    """The lines the quick start shows ``labric serve`` printing (its ``# LABRIC_...`` lines)."""
    return [
        line.removeprefix("# ")
        for line in block_with("labric serve --data-dir").splitlines()
        if line.startswith("# LABRIC_")
    ]


@pytest.fixture
def served(sandbox: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The quick start's ``labric serve`` line, running in the sandbox; its first output lines."""
    (line,) = commands(block_with("labric serve --data-dir"))
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {line}"],
        cwd=sandbox,
        env=shell_env(sandbox),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline().rstrip("\n") for _ in shown_lines()]
        if not all(printed):
            proc.kill()
            _, err = proc.communicate(timeout=TIMEOUT)
            pytest.fail(f"labric serve printed {printed!r} and ended: {err}")
        yield proc, printed
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_quick_start_serve_prints_the_lines_shown_and_curl_lists_files(
    sandbox: Path, served: tuple[subprocess.Popen[str], list[str]]
) -> None:
    _, printed = served
    shown = shown_lines()
    assert [line.split("=", 1)[0] for line in shown][:2] == [
        "LABRIC_API_BASE_URL",
        "LABRIC_API_KEY",
    ]
    for expected, actual in zip(shown, printed, strict=True):
        # "..." stands for a secret the server made (the key, the console's token)
        pattern = re.escape(expected).replace(re.escape("..."), r"[A-Za-z0-9_\-]+")
        assert re.fullmatch(pattern, actual), (expected, actual)
    env = dict(line.split("=", 1) for line in printed)
    assert (sandbox / "labric-data").is_dir()

    # `eval "$(.venv/bin/labric env --data-dir ./labric-data)"`, as the quick start says.
    exported = run_block(
        'eval "$(.venv/bin/labric env --data-dir ./labric-data)"; '
        'echo "$LABRIC_API_BASE_URL $LABRIC_API_KEY"',
        sandbox,
        shell_env(sandbox),
    )
    assert exported.stdout.split() == [env["LABRIC_API_BASE_URL"], env["LABRIC_API_KEY"]]

    with Labric(api_key=env["LABRIC_API_KEY"], base_url=env["LABRIC_API_BASE_URL"]) as client:
        uploaded = client.files.upload(b"well,od\nA1,1\n", name="runs/plate-7/read.csv")

    curl = block_with("curl ")
    lines = commands(curl)
    assert len(lines) == 1
    done = run_block(
        lines[0].replace("lbk_...", env["LABRIC_API_KEY"]) + " --fail --silent --show-error",
        sandbox,
        shell_env(sandbox),
    )
    listed = json.loads(done.stdout)
    assert [f["file_id"] for f in listed] == [uploaded.file_id]
    shape = next(line for line in curl.splitlines() if line.startswith("# ["))
    assert listed[0]["original_path"] in shape


README_JOB = """
import sys
from labric.job import JobContext

ctx = JobContext.from_env()
print(f"gain {ctx.parameters['gain']} on {len(ctx.files)} file(s)")
sys.exit(0 if ctx.files else 1)
"""


@pytest.fixture
def cli_world(sandbox: Path) -> Iterator[tuple[ThreadedServer, dict[str, str]]]:
    """A server and a working directory holding everything the command-line block names."""
    with LocalServer.run_in_thread(sandbox.parent / "server") as srv:
        for name in ("plate1.csv", "plate2.csv", "notes/readme.txt"):
            target = sandbox / "runs" / "run42" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{name}\nA1,0.4\n")
        for name in ("a/one.csv", "a/b/two.csv", "skip.txt"):
            target = sandbox / "exports" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{name}\n")
        (sandbox / "plate7.csv").write_text("well,od600\nA1,0.7\n")
        with Labric(api_key=srv.admin_key, base_url=srv.base_url) as client:
            reader = client.instruments.create(name="plate reader")
            first = client.files.upload(b"well,od600\nA1,0.41\n", name="plate 7/first.csv")
            other = client.files.upload(b"well,od600\nA1,0.39\n", name="plate 7/other.csv")
            client.datasets.create(
                "plate_reads",
                columns=[
                    {"name": "plate", "type": "text"},
                    {"name": "od600", "type": "float"},
                ],
            )
            client.datasets.write(
                "plate_reads",
                [
                    {"plate": plate, "od600": od}
                    for plate, od in (("P007", 0.3), ("P007", 0.1), ("P008", 0.5))
                ],
            )
            job = client.jobs.create(
                name="nightly-parse",
                code=README_JOB,
                parameter_definitions=[
                    {"widget_type": "text", "parameter_name": "gain", "default": "1"}
                ],
            )
            earlier = client.jobs.run(job.id, file_ids=[first.file_id])
            assert client.jobs.wait(earlier.id, timeout=120).status == "completed"
        yield (
            srv,
            {
                "LABRIC_API_KEY": srv.admin_key,
                "LABRIC_API_BASE_URL": srv.base_url,
                "READER": reader.instrument.id,
                "FILE_ID": first.file_id,
                "OTHER_ID": other.file_id,
                "EXECUTION_ID": earlier.id,
            },
        )


def test_command_line_block_runs_and_does_what_it_says(
    sandbox: Path, cli_world: tuple[ThreadedServer, dict[str, str]]
) -> None:
    srv, values = cli_world
    block = block_with("labric files upload runs/run42")
    done = run_block(block, sandbox, shell_env(sandbox, **values))
    out = done.stdout

    with Labric(api_key=srv.admin_key, base_url=srv.base_url) as client:
        paths = {f.original_path: f.file_id for f in client.files.list()}
        (job,) = client.jobs.list(name="nightly-parse")
        statuses = [r.status for r in client.jobs.executions.list(job_id=job.id)]
    # `files upload runs/run42 'exports/**/*.csv'`: the folder under its name, the glob's CSVs
    # only; `--name` put plate7.csv where it said; `sync up` found nothing new to send.
    assert sorted(paths) == [
        "a/b/two.csv",
        "a/one.csv",
        "plate 7/first.csv",
        "run42/notes/readme.txt",
        "run42/plate1.csv",
        "run42/plate2.csv",
        "runs/run42/plate7.csv",
    ]
    assert "sync up: 0 uploaded (0 B), 3 unchanged, 0 failed" in done.stderr
    # `files ls --query "plate 7"`: every path holding both terms, newest first
    table = out.split("FILE_ID  ", 1)[1].splitlines()[1:]
    listed = [m.group(1) for line in table if (m := re.search(r"\d\d:\d\d:\d\d  (.+)$", line))]
    assert listed[:3] == ["runs/run42/plate7.csv", "plate 7/other.csv", "plate 7/first.csv"]
    # `files download ... -o back/`: both files, byte for byte, under their platform paths
    assert (sandbox / "back/plate 7/first.csv").read_bytes() == b"well,od600\nA1,0.41\n"
    assert (sandbox / "back/plate 7/other.csv").read_bytes() == b"well,od600\nA1,0.39\n"
    # `files info --json` described FILE_ID; `files rm "$OTHER_ID"` deleted that file only
    assert f'"file_id": "{values["FILE_ID"]}"' in out
    assert f"deleted {values['OTHER_ID']}" in out
    assert values["OTHER_ID"] not in paths.values()
    # `datasets query`: the averages; `--param 0.2 --json` and `rows --where plate=P007`
    assert re.search(r"^P007\s+0\.2\s*$", out, re.M)
    assert re.search(r"^P008\s+0\.5\s*$", out, re.M)
    # `jobs run ... --wait` ran the job once more to completion with gain=5 (text parameter)
    assert statuses == ["completed", "completed"]
    assert re.search(r"\bnightly-parse\s+completed", out)
    # `jobs logs "$EXECUTION_ID"`: the earlier run's output
    assert "gain 1 on 1 file(s)" in out
    # `sync down runs/run42` left the local copies equal to the platform's
    assert (sandbox / "runs/run42/plate1.csv").read_text() == "plate1.csv\nA1,0.4\n"


SCENARIO_MARKERS: tuple[str, ...] = (
    "labric demo",
    "labric serve --data-dir",
    "curl ",
    "labric files upload runs/run42",
)

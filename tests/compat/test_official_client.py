"""The official client (``labric`` 0.14.17 from PyPI) works unchanged against the local server.

The official package is imported as ``labric`` too, so it lives in its own virtualenv and runs in
a subprocess: ``official_client_script.py`` makes the calls and reports them as JSON. The venv is
``$LABRIC_OFFICIAL_VENV``, else ``.venv-official`` in the repository root; ``nox -s compat``
creates it and runs this test. Without it the test is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("official_client_script.py")
ENV_VENV = "LABRIC_OFFICIAL_VENV"
SCRIPT_TIMEOUT = 240.0


def official_python() -> Path:
    """The official venv's interpreter, or skip the test saying how to create it.

    CI sets ``LABRIC_REQUIRE_OFFICIAL_CLIENT=1`` (``.ci/run`` creates the venv), so there a
    missing venv fails the run instead of skipping the comparison silently.
    """
    venv = Path(os.environ.get(ENV_VENV) or REPO_ROOT / ".venv-official")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        message = (
            f"no official-client venv at {venv}; create it with `nox -s compat` "
            f"(or point {ENV_VENV} at a venv with labric==0.14.17 and httpx installed)"
        )
        if os.environ.get("LABRIC_REQUIRE_OFFICIAL_CLIENT"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def origin_of(base_url: str) -> str:
    """``http://127.0.0.1:PORT/api`` -> ``http://127.0.0.1:PORT``: the official client adds
    ``api/v1/...`` to the origin itself."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


async def run_script(
    python: Path, origin: str, key: str, cwd: Path, long: int
) -> tuple[int, str, str]:
    # -I keeps the repository (and PYTHONPATH) off sys.path, so `import labric` is the official
    # package. The key travels in the environment, not on the command line.
    process = await asyncio.create_subprocess_exec(
        str(python),
        "-I",
        str(SCRIPT),
        origin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LABRIC_API_KEY": key, "LABRIC_COMPAT_LONG": str(long)},
        cwd=cwd,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.communicate()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['name']}: {c.get('error')}" for c in report["checks"] if c["required"] and not c["ok"]
    ]


#: Items per page of the server under test: the script's listings are longer than this.
PAGE = 50


async def test_official_client_against_local_server(tmp_path: Path) -> None:
    from labric.server import LocalServer

    python = official_python()
    async with LocalServer(
        tmp_path / "server", default_page_size=PAGE // 2, max_page_size=PAGE
    ) as server:
        # The scopes the hosted API documents for these calls; none needs admin.
        key = server.create_key("read,write")
        returncode, stdout, stderr = await run_script(
            python, origin_of(server.base_url), key, tmp_path, PAGE + 10
        )
    assert returncode in (0, 1), f"the script could not run (exit {returncode}):\n{stderr}"
    report = json.loads(stdout)
    assert report["package"] == report["expected_package"], report["package"]
    assert report["ok"], "official client checks failed:\n" + "\n".join(failures(report))
    assert returncode == 0
    surface = set(report["surface"])
    uncovered = sorted(surface - set(report["covered"]))
    assert not uncovered, f"methods of the official client that no check calls: {uncovered}"
    unknown = sorted(set(report["covered"]) - surface)
    assert not unknown, f"checks name methods the official client lacks: {unknown}"
    # 27 generated methods (one group call each) and the hand-written helpers, sync and async.
    assert len([n for n in surface if n.startswith("client.")]) == 6

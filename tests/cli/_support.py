"""Helpers of the CLI tests: running ``labric`` in-process and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from labric.cli import main

#: Only bounds a hung command; a subprocess start takes about half a second.
COMMAND_TIMEOUT = 120.0


@attrs.frozen
class Done:
    """A finished ``labric`` command: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def call(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    """Run ``labric ARGS`` in this process (``main([...])``), capturing its output."""
    capsys.readouterr()  # drop anything printed before
    code = main(list(args))
    captured = capsys.readouterr()
    return Done(code, captured.out, captured.err)


def run_labric(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> Done:
    """Run ``python -m labric.cli ARGS`` with ``env`` added to the environment, output piped."""
    proc = subprocess.run(
        [sys.executable, "-m", "labric.cli", *args],
        env={**os.environ, "PYTHONWARNINGS": "error", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Done(proc.returncode, proc.stdout, proc.stderr)


def make_tree(root: Path, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (relative path -> bytes) under ``root``; return ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root

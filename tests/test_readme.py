"""Every Python block in the README runs, against a local server, so the README cannot drift."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from labric.server import LocalServer, ThreadedServer

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


@pytest.fixture(scope="module")
def threaded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path_factory.mktemp("readme") / "server") as srv:
        yield srv


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(
    index: int, threaded_server: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABRIC_API_KEY", threaded_server.admin_key)
    monkeypatch.setenv("LABRIC_API_BASE_URL", threaded_server.base_url)
    code = compile(BLOCKS[index], f"README.md block {index + 1}", "exec")
    exec(code, {"__name__": "__readme__"})

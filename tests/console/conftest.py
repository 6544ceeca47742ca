"""The browser tests' fixtures: one seeded server, one headless Chromium, pages signed in.

The browser is the system's Chromium (Debian's ``chromium`` package), driven by Playwright; no
browser is ever downloaded. Without one the browser tests skip, saying why, unless
``LABRIC_REQUIRE_BROWSER`` is set (CI sets it), when they fail instead. Screenshots go to
``LABRIC_SCREENSHOT_DIR`` (default: a new temporary directory, never inside the repository).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from labric import Labric
from labric.server import ThreadedServer

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_NAME = "<img src=x onerror=alert(1)>.csv"
SAMPLES = [
    {"name": "s1", "day": 1, "od600": 0.10, "strain": "wt"},
    {"name": "s2", "day": 2, "od600": 0.25, "strain": "wt"},
    {"name": "s3", "day": 3, "od600": 0.55, "strain": "wt"},
    {"name": "s4", "day": 1, "od600": 0.12, "strain": "mut"},
    {"name": "s5", "day": 2, "od600": 0.20, "strain": "mut"},
    {"name": "s6", "day": 3, "od600": 0.90, "strain": "mut"},
]


def _chromium() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _no_browser(reason: str) -> None:
    if os.environ.get("LABRIC_REQUIRE_BROWSER"):
        pytest.fail(f"LABRIC_REQUIRE_BROWSER is set, but {reason}", pytrace=False)
    pytest.skip(
        f"{reason}: the console's browser tests need Debian's chromium "
        "(apt-get install chromium) and Playwright (pip install -e '.[console-test]')"
    )


def _png(width: int = 24, height: int = 16) -> bytes:
    """A small striped RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((40 * (x // 4), 120, 200)) for x in range(width))
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@attrs.frozen
class Seeded:
    """The seeded server and the ids the tests look for."""

    server: ThreadedServer
    gate: Path
    ids: dict[str, str]


class Clock:
    """The server's clock: real time moved by ``offset`` seconds (to report in the past)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _seed(server: ThreadedServer, clock: Clock, folder: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    with Labric(server.admin_key, base_url=server.base_url) as client:
        instrument = client.instruments.create(name="Plate reader 2")
        ids["instrument"] = instrument.instrument.id
        device = client.instruments.pair(instrument.pairing_code)
        with Labric(device.api_key, base_url=server.base_url) as reader:
            # Reports three, two and one hours ago: the silences between them count as offline.
            for hours, status in ((3, "online"), (2, "error"), (1, "online")):
                clock.offset = -hours * 3600.0
                reader.instruments.report_status(ids["instrument"], status=status)
            clock.offset = 0.0
            reader.instruments.report_status(ids["instrument"], status="online", is_watching=True)
        (folder / HOSTILE_NAME).write_text("well,od600\nA1,0.41\nA2,0.39\n")
        ids["hostile"] = client.files.upload(folder / HOSTILE_NAME).file_id
        (folder / "plate.png").write_bytes(_png())
        ids["image"] = client.files.upload(
            folder / "plate.png", instrument_id=ids["instrument"]
        ).file_id
        (folder / "notes.txt").write_text("first read at 09:00\n")
        ids["text"] = client.files.upload(folder / "notes.txt").file_id
        client.datasets.create(
            "samples",
            columns=[
                {"name": "name", "type": "text"},
                {"name": "day", "type": "integer"},
                {"name": "od600", "type": "float"},
                {"name": "strain", "type": "text"},
            ],
        )
        client.datasets.write("samples", SAMPLES)
        row_id = client.datasets.query("SELECT id FROM samples ORDER BY day LIMIT 1").data[0][0]
        experiment = client.experiments.create(
            name="Growth curve 7", status="running", tags=["od600", "ecoli"]
        )
        ids["experiment"] = experiment.id
        client.experiments.link_files(experiment.id, [ids["hostile"]])
        client.experiments.link_rows(experiment.id, [("samples", row_id)])
        source = {"type": "sql", "query": "SELECT day, od600 FROM samples ORDER BY day"}
        board = client.dashboards.create(
            name="Growth",
            widgets=[
                {"type": "chart", "kind": "line", "title": "Line", "source": source,
                 "layout": {"x": 0, "y": 0, "w": 6, "h": 4}},
                {"type": "chart", "kind": "bar", "title": "Bar", "source": source,
                 "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
                {"type": "chart", "kind": "scatter", "title": "Scatter", "source": source,
                 "layout": {"x": 0, "y": 4, "w": 6, "h": 4}},
                {"type": "chart", "kind": "histogram", "title": "Histogram", "column": "od600",
                 "bins": 4, "source": source, "layout": {"x": 6, "y": 4, "w": 6, "h": 4}},
                {"type": "table", "title": "<b>Table</b>", "source": source,
                 "layout": {"x": 0, "y": 8, "w": 4, "h": 4}},
                {"type": "metric", "title": "Samples", "label": "rows", "unit": "n",
                 "source": {"type": "sql", "query": "SELECT count(*) FROM samples"},
                 "layout": {"x": 4, "y": 8, "w": 4, "h": 2}},
                {"type": "text", "title": "Notes", "markdown": "**Growth** <script>x</script>",
                 "layout": {"x": 8, "y": 8, "w": 4, "h": 2}},
            ],
        )  # fmt: skip
        ids["dashboard"] = board.id
        client.notifications.send(
            "Run finished <script>alert(1)</script>",
            dedupe_key="run-7",
            body="Growth curve 7 finished",
            action_url="/jobs/7",
        )
    return ids


def _follow_job(gate: Path) -> str:
    """A job that logs a line, waits for ``gate`` to exist (the test makes it), logs another."""
    return (
        "import pathlib, time\n"
        "print('step 1: started', flush=True)\n"
        f"gate = pathlib.Path({str(gate)!r})\n"
        "deadline = time.monotonic() + 120\n"
        "while not gate.exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print('step 2: finished', flush=True)\n"
    )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One server for the browser tests, seeded with a little of everything."""
    root = tmp_path_factory.mktemp("console")
    gate = root / "gate"
    clock = Clock()
    with ThreadedServer(root / "server", clock=clock) as server:
        ids = _seed(server, clock, root)
        with Labric(server.admin_key, base_url=server.base_url) as client:
            ids["job"] = client.jobs.create(name="follow me", code=_follow_job(gate)).id
        yield Seeded(server, gate, ids)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the page screenshots go."""
    chosen = os.environ.get("LABRIC_SCREENSHOT_DIR")
    folder = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="labric-console-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests (all in one module).

    Module-scoped, not session-scoped: Playwright's synchronous API keeps an event loop running
    on this thread while it is open, and the suite's async tests need the thread's loop free.
    """
    executable = _chromium()
    if executable is None:
        _no_browser("no chromium executable was found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("Playwright is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console(browser: Any, seeded: Seeded) -> Iterator[Any]:
    """A signed-in page, reused by the tests; it fails a test that opens a dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    page.goto(seeded.server.console_url)
    yield page
    context.close()

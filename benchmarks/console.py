"""What the web console's pages cost next to the API calls that read the same data.

Against ``labric serve`` in its own process, seeded with ``--files`` files, a dataset and a
dashboard of seven widgets, one browser-like session (the console's cookie) and one API client
alternate, at concurrency 1:

* the files page (50 rows of HTML) against ``GET /v1/files?page_size=50`` (JSON);
* a dashboard page (seven widgets evaluated and drawn as HTML plus chart data) against the
  seven ``widget_data`` calls that evaluate the same widgets.

Reported as the median latency of each and their ratio (the page's cost over the API's).

Usage::

    python -m benchmarks.console                 # defaults: 2,000 files, 200 rounds
    python -m benchmarks.console --files 500 --rounds 50

Results: a Markdown table on stdout and JSON in ``.bench-data/console.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    argv = [sys.executable, "-m", "labric.cli", "serve", "--data-dir", str(data_dir)]
    proc = subprocess.Popen([*argv, "--port", "0"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    env: dict[str, str] = {}
    while len(env) < 3:
        line = proc.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError("labric serve exited before printing its three lines")
        name, _, value = line.partition("=")
        env[name] = value
    return proc, env


async def _seed(env: dict[str, str], files: int, folder: Path) -> str:
    from labric import AsyncLabric

    async with AsyncLabric(env["LABRIC_API_KEY"], base_url=env["LABRIC_API_BASE_URL"]) as client:
        for i in range(files):
            (folder / f"plate-{i % 37}-read-{i:05d}.csv").write_text(f"well,od600\nA1,0.{i}\n")
        outcomes = await client.files.upload_many([folder])
        assert all(o.ok for o in outcomes)
        await client.datasets.create(
            "samples",
            columns=[{"name": "day", "type": "integer"}, {"name": "od600", "type": "float"}],
        )
        await client.datasets.write(
            "samples", [{"day": d % 30, "od600": d / 1000} for d in range(1000)]
        )
        source = {"type": "sql", "query": "SELECT day, avg(od600) FROM samples GROUP BY day"}
        widgets: list[dict[str, Any]] = [
            {"type": "chart", "kind": kind, "source": source} for kind in ("line", "bar", "scatter")
        ]
        widgets += [
            {"type": "chart", "kind": "histogram", "column": "od600", "source": {
                "type": "sql", "query": "SELECT od600 FROM samples"}},
            {"type": "table", "source": source},
            {"type": "metric", "source": {"type": "sql", "query": "SELECT count(*) FROM samples"}},
            {"type": "text", "markdown": "notes"},
        ]  # fmt: skip
        board = await client.dashboards.create(name="bench", widgets=widgets)
        return board.id


async def _times_ms(call: Callable[[], Awaitable[None]], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return times


async def _measure(env: dict[str, str], board: str, rounds: int) -> dict[str, Any]:
    import aiohttp

    base = env["LABRIC_API_BASE_URL"]
    origin = base.removesuffix("/api")
    headers = {"Authorization": f"Bearer {env['LABRIC_API_KEY']}"}
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
        aiohttp.ClientSession(headers=headers) as api,
    ):
        async with browser.get(env["LABRIC_CONSOLE_URL"]) as resp:
            assert resp.status == 200
        async with api.get(f"{base}/v1/dashboards/{board}") as resp:
            widget_ids = [w["id"] for w in (await resp.json())["widgets"]]

        async def fetch(session: aiohttp.ClientSession, url: str) -> None:
            async with session.get(url) as resp:
                assert resp.status == 200, (url, resp.status)
                await resp.read()

        async def files_page() -> None:
            await fetch(browser, f"{origin}/console/files")

        async def files_api() -> None:
            await fetch(api, f"{base}/v1/files?page_size=50")

        async def dashboard_page() -> None:
            await fetch(browser, f"{origin}/console/dashboards/{board}")

        async def dashboard_api() -> None:
            for widget_id in widget_ids:
                await fetch(api, f"{base}/v1/dashboards/{board}/widgets/{widget_id}/data")

        pairs = {
            "files: page vs GET /v1/files?page_size=50": (files_page, files_api),
            "dashboard (7 widgets): page vs 7 widget_data calls": (dashboard_page, dashboard_api),
        }
        results: dict[str, Any] = {}
        for name, (page, call) in pairs.items():
            page_times: list[float] = []
            api_times: list[float] = []
            per_block = max(1, rounds // 10)
            for block in range(10):  # alternate the order in blocks, so drift hits both alike
                if block % 2:
                    api_times += await _times_ms(call, per_block)
                    page_times += await _times_ms(page, per_block)
                else:
                    page_times += await _times_ms(page, per_block)
                    api_times += await _times_ms(call, per_block)
            page_ms, api_ms = statistics.median(page_times), statistics.median(api_times)
            results[name] = {"page_ms": page_ms, "api_ms": api_ms, "ratio": page_ms / api_ms}
        return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="labric-bench-console-") as tmp:
        proc, env = _start(Path(tmp) / "data")
        try:
            folder = Path(tmp) / "files"
            folder.mkdir()
            board = asyncio.run(_seed(env, args.files, folder))
            results = asyncio.run(_measure(env, board, args.rounds))
        finally:
            proc.terminate()
            proc.wait()
    print(f"{args.files} files, {args.rounds} rounds each\n")
    print("| what | page median | API median | page / API |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['page_ms']:.2f} ms | {r['api_ms']:.2f} ms | {r['ratio']:.2f}x |")
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps({"files": args.files, **results}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])

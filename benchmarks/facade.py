"""The sync facade's overhead: ``Labric`` against ``AsyncLabric`` on the same local server.

Measured at concurrency 1 (one call at a time), against a minimal aiohttp server in a separate
process so that neither client shares its event loop (or its GIL) with the server:

* ``files.get``: latency per call (median, p90);
* ``files.list``: a 1,000-item listing in pages of 100 (ten requests), as items per second.

Async and sync blocks alternate, in alternating order, so drift on a busy machine hits both. A
third row, for reference only, dispatches each call with anyio's ``BlockingPortal.call`` (the
facade does not: ``start_task_soon`` also waits for the task to be spawned, a second thread
hand-off per call). Targets: sync at most 1.3x async per call, listing at least 0.9x its items/s.

Usage::

    python -m benchmarks.facade                  # defaults: 10 rounds x 300 gets, 10 x 3 lists
    python -m benchmarks.facade --rounds 20 --gets 500

Results: a Markdown table on stdout and JSON in ``.bench-data/facade.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "lbk_bench_0123456789abcdef"
N_ITEMS = 1000
PAGE_SIZE = 100


# -- the server (run in its own process) ----------------------------------------------------------


def _file(i: int) -> dict[str, Any]:
    return {
        "file_id": f"file-{i:05d}",
        "original_path": f"runs/plate-{i % 97}/read-{i:05d}.csv",
        "source_type": "instrument",
        "source_instrument_id": "instrument-1",
        "size_kilobytes": 12,
        "crc32c_hash": "yZRlqg==",
        "file_created_at": "2025-06-01T12:00:00Z",
        "file_name": f"read-{i:05d}.csv",
        "size_bytes": 12_288,
        "content_type": "text/csv",
        "job_execution_id": None,
    }


def serve() -> None:
    """Serve ``GET /api/v1/files`` (paged by ``Link``) and ``GET /api/v1/files/{id}``."""
    from aiohttp import web

    files = [_file(i) for i in range(N_ITEMS)]

    async def list_files(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "100"))
        start = int(request.query.get("cursor", "0"))
        headers = {}
        if start + limit < len(files):
            headers["Link"] = f'</api/v1/files?limit={limit}&cursor={start + limit}>; rel="next"'
        return web.json_response(files[start : start + limit], headers=headers)

    async def get_file(request: web.Request) -> web.Response:
        return web.json_response(files[int(request.match_info["file_id"].split("-")[1])])

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/files", list_files)
        app.router.add_get("/api/v1/files/{file_id}", get_file)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def server_process() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.facade", "--serve"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/api"
    finally:
        proc.terminate()
        proc.wait()


# -- measuring ------------------------------------------------------------------------------------


def _summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "n": len(ordered),
        "median_us": statistics.median(ordered) / 1e3,
        "p90_us": ordered[int(0.9 * (len(ordered) - 1))] / 1e3,
        "mean_us": statistics.fmean(ordered) / 1e3,
    }


def _timed(fn: Callable[[], object], n: int, out: list[int]) -> None:
    for _ in range(n):
        started = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - started)


def run(base_url: str, rounds: int, gets: int, lists: int, reference: bool) -> dict[str, Any]:
    from labric import AsyncLabric, Labric

    ids = [f"file-{i:05d}" for i in range(N_ITEMS)]
    samples: dict[str, dict[str, list[int]]] = {
        side: {"get": [], "list": []} for side in ("async", "sync", "portal.call")
    }
    runner = asyncio.Runner()
    aclient = runner.run(_make_async(AsyncLabric, base_url))
    client = Labric(KEY, base_url=base_url, max_retries=0)
    ref = _ReferencePortal(base_url) if reference else None
    try:

        def async_block(kind: str, n: int) -> None:
            runner.run(_async_block(aclient, kind, n, ids, samples["async"][kind]))

        def sync_block(kind: str, n: int) -> None:
            if kind == "get":
                it = iter(range(n))
                _timed(lambda: client.files.get(ids[next(it) % N_ITEMS]), n, samples["sync"][kind])
            else:
                _timed(
                    lambda: _check(client.files.list(page_size=PAGE_SIZE).to_list()),
                    n,
                    samples["sync"][kind],
                )

        def ref_block(kind: str, n: int) -> None:
            if ref is not None:
                ref.block(kind, n, ids, samples["portal.call"][kind])

        # Warm up connections, caches and code paths on every side.
        for block in (async_block, sync_block, ref_block):
            block("get", 50)
            block("list", 1)
        for r in range(rounds):
            order = [async_block, sync_block, ref_block]
            if r % 2:
                order.reverse()
            for block in order:
                block("get", gets)
                block("list", lists)
    finally:
        client.close()
        runner.run(aclient.aclose())
        runner.close()
        if ref is not None:
            ref.close()
    report: dict[str, Any] = {}
    for side, kinds in samples.items():
        if not kinds["get"]:
            continue
        listing = _summary(kinds["list"])
        report[side] = {
            "get": _summary(kinds["get"]),
            "list": {**listing, "items_per_s": N_ITEMS / (listing["median_us"] / 1e6)},
        }
    return report


async def _make_async(cls: Any, base_url: str) -> Any:
    return cls(KEY, base_url=base_url, max_retries=0)


def _check(items: list[Any]) -> None:
    if len(items) != N_ITEMS:
        raise AssertionError(f"expected {N_ITEMS} items, got {len(items)}")


async def _async_block(client: Any, kind: str, n: int, ids: list[str], out: list[int]) -> None:
    for i in range(n):
        started = time.perf_counter_ns()
        if kind == "get":
            await client.files.get(ids[i % N_ITEMS])
        else:
            _check(await client.files.list(page_size=PAGE_SIZE).to_list())
        out.append(time.perf_counter_ns() - started)


class _ReferencePortal:
    """Each call through anyio's ``BlockingPortal.call``, for comparison only."""

    def __init__(self, base_url: str) -> None:
        from anyio.from_thread import start_blocking_portal  # noqa: TID251 (reference only)

        from labric import AsyncLabric

        self._cm = start_blocking_portal()
        self.portal = self._cm.__enter__()
        self.client = self.portal.call(_make_async, AsyncLabric, base_url)

    def block(self, kind: str, n: int, ids: list[str], out: list[int]) -> None:
        files = self.client.files
        if kind == "get":
            it = iter(range(n))
            _timed(lambda: self.portal.call(files.get, ids[next(it) % N_ITEMS]), n, out)
        else:
            _timed(lambda: _check(self.portal.call(_to_list, files)), n, out)

    def close(self) -> None:
        self.portal.call(self.client.aclose)
        self._cm.__exit__(None, None, None)


async def _to_list(files: Any) -> list[Any]:
    # One crossing per listing here (the facade crosses once per page): flatters the reference.
    return list(await files.list(page_size=PAGE_SIZE).to_list())


# -- reporting ------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    base = report["async"]
    lines = [
        "| client | files.get median (us) | p90 (us) | x async | "
        "list 1,000 median (ms) | p90 (ms) | items/s | x async |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {"async": "AsyncLabric", "sync": "Labric", "portal.call": "BlockingPortal.call (ref)"}
    for side, row in report.items():
        if side not in names:
            continue
        get, lst = row["get"], row["list"]
        lines.append(
            f"| {names[side]} | {get['median_us']:.0f} | {get['p90_us']:.0f} | "
            f"{get['median_us'] / base['get']['median_us']:.2f} | "
            f"{lst['median_us'] / 1e3:.1f} | {lst['p90_us'] / 1e3:.1f} | "
            f"{lst['items_per_s']:,.0f} | "
            f"{lst['items_per_s'] / base['list']['items_per_s']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.facade")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--gets", type=int, default=300, help="files.get calls per round")
    parser.add_argument("--lists", type=int, default=3, help="1,000-item listings per round")
    parser.add_argument("--no-reference", action="store_true", help="skip the portal.call row")
    args = parser.parse_args(argv)
    with server_process() as base_url:
        report = run(base_url, args.rounds, args.gets, args.lists, not args.no_reference)
    sync, base = report["sync"], report["async"]
    report["ratios"] = {
        "get_median_sync_over_async": sync["get"]["median_us"] / base["get"]["median_us"],
        "list_items_per_s_sync_over_async": sync["list"]["items_per_s"]
        / base["list"]["items_per_s"],
    }
    report["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    report["settings"] = vars(args) | {"items": N_ITEMS, "page_size": PAGE_SIZE}
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "facade.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Dataset write benchmark: N rows from a generator through ``client.datasets.write``.

The server runs in its own process (``labric serve`` on a fresh data directory); the client runs in
another subprocess, so its wall time, CPU seconds and peak RSS (``os.wait4``) are its own. A
baseline subprocess that only imports ``labric`` and opens a client shows the fixed part of the
RSS, so what the write itself adds is visible. Rows are produced by a generator and never held
in memory together.

Usage::

    python -m benchmarks.datasets_write                 # 100,000 rows
    python -m benchmarks.datasets_write --rows 250000

Results: a Markdown table on stdout and JSON in ``.bench-data/datasets_write.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.transfer import run_contender, start_server

ROOT = Path(__file__).resolve().parent.parent
TABLE = "readings"
COLUMNS = [
    {"name": "sample", "type": "text", "nullable": False},
    {"name": "well", "type": "text"},
    {"name": "t", "type": "float"},
    {"name": "od600", "type": "float"},
    {"name": "ok", "type": "boolean"},
    {"name": "taken_at", "type": "datetime"},
]


def rows(n: int) -> Iterator[dict[str, Any]]:
    """``n`` rows of about 150 bytes each, made one at a time."""
    for i in range(n):
        yield {
            "sample": f"S-{i // 96:05}",
            "well": f"{'ABCDEFGH'[i % 8]}{i % 12 + 1}",
            "t": i * 0.5,
            "od600": (i * 7919 % 1000) / 1000,
            "ok": i % 17 != 0,
            "taken_at": f"2025-03-01T{(i // 3600) % 24:02}:{(i // 60) % 60:02}:{i % 60:02}Z",
        }


async def worker(n: int) -> dict[str, Any]:
    from labric import AsyncLabric

    async with AsyncLabric() as client:
        if n == 0:
            await client.datasets.list()
            return {"rows": 0}
        batches: list[float] = []
        started = time.perf_counter()
        summary = await client.datasets.write(
            TABLE, rows(n), on_progress=lambda e: batches.append(e.elapsed)
        )
        elapsed = time.perf_counter() - started
        stored = await client.datasets.query(f"SELECT count(*) FROM {TABLE}")
        return {
            "rows": summary.rows,
            "stored": stored.data[0][0],
            "requests": summary.requests,
            "batch_rows": [b.stop - b.start for b in summary.batches],
            "elapsed_s": elapsed,
            "rows_per_s": summary.rows / elapsed,
        }


def setup(base_url: str, key: str) -> None:
    from labric import Labric

    with Labric(key, base_url=base_url) as client:
        client.datasets.create(TABLE, columns=COLUMNS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.rows))))
        return
    work = Path(tempfile.mkdtemp(prefix="labric-bench-datasets-"))
    server, base_url, key = start_server(work / "server")
    try:
        setup(base_url, key)
        env = {**os.environ, "LABRIC_API_BASE_URL": base_url, "LABRIC_API_KEY": key}
        env["PYTHONPATH"] = str(ROOT)
        me = [sys.executable, "-m", "benchmarks.datasets_write", "--worker"]
        baseline = run_contender([*me, "--rows", "0"], env)
        result = run_contender([*me, "--rows", str(args.rows)], env)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    report = {"baseline": baseline, "write": result}
    (out / "datasets_write.json").write_text(json.dumps(report, indent=2))
    print("| rows | requests | rows/s | wall s | client CPU s | peak RSS MiB | baseline RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['rows']:,} | {result['requests']} | {result['rows_per_s']:,.0f} | "
        f"{result['elapsed_s']:.2f} | {result['cpu_s']:.2f} | {result['peak_rss_mib']:.1f} | "
        f"{baseline['peak_rss_mib']:.1f} |"
    )
    assert result["stored"] == result["rows"], "rows went missing"
    print(f"batches: {result['batch_rows']}")


if __name__ == "__main__":
    main()

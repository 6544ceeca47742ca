"""The deprecated write routes against ``data/write``: the same rows, the same engine.

A local server runs in this process on a fresh data directory; the same N rows are written in
one request each way, timed over real sockets, and the rows per second printed:

* ``data/write`` (insert), the route the SDK uses;
* ``tools/write`` ``create`` (what ``write_labric_table(mode="create")`` sends);
* ``tools/write`` ``create-or-update`` of the same rows again, matched on a unique column with
  ``fill_missing`` (every row an update: the official client's default mode);
* ``tools/batch-write`` of a parent table and N child rows referring to it by natural key.

Usage::

    python -m benchmarks.legacy_write               # 5,000 rows
    python -m benchmarks.legacy_write --rows 10000  # the most one request may hold

Results: a Markdown table on stdout and JSON in ``.bench-data/legacy_write.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from labric.server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    {"name": "code", "type": "text", "nullable": False, "unique": True},
    {"name": "t", "type": "float"},
    {"name": "od600", "type": "float"},
    {"name": "note", "type": "text"},
]


def rows(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"code": f"{prefix}-{i:06}", "t": i * 0.5, "od600": i % 1000 / 1000} for i in range(n)]


async def measure(n: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalServer(Path(tmp) / "server") as server, aiohttp.ClientSession() as s:
            headers = {"Authorization": f"Bearer {server.admin_key}"}

            async def post(path: str, body: Any) -> Any:
                async with s.post(server.base_url + path, json=body, headers=headers) as r:
                    assert r.status < 300, await r.text()
                    return await r.json()

            for name in ("via_data", "via_tools", "parents"):
                await post("/v1/datasets", {"name": name, "columns": COLUMNS})
            await post(
                "/v1/datasets",
                {
                    "name": "children",
                    "columns": [
                        {"name": "parent", "foreign_key": "parents", "nullable": False},
                        {"name": "v", "type": "float"},
                    ],
                },
            )

            async def timed(label: str, path: str, body: Any) -> None:
                started = time.perf_counter()
                await post(path, body)
                seconds = time.perf_counter() - started
                results.append(
                    {"route": label, "rows": n, "seconds": seconds, "rows_per_s": n / seconds}
                )

            await timed(
                "data/write insert",
                "/v1/data/write",
                {"tables": [{"table": "via_data", "rows": rows(n, "D")}]},
            )
            tools = {"target_name": "via_tools", "target_type": "table"}
            await timed(
                "tools/write create",
                "/v1/tools/write",
                {**tools, "data": rows(n, "T"), "mode": "create"},
            )
            await timed(
                "tools/write create-or-update (all updates)",
                "/v1/tools/write",
                {
                    **tools,
                    "data": [{**r, "note": "x"} for r in rows(n, "T")],
                    "mode": "create-or-update",
                    "params_to_match_for_update": ["code"],
                },
            )
            parents = [{"code": f"P-{i}"} for i in range(max(1, n // 100))]
            children = [
                {"parent": f"P-{i % len(parents)}", "v": float(i)} for i in range(n - len(parents))
            ]
            await timed(
                "tools/batch-write (natural keys)",
                "/v1/tools/batch-write",
                {"tables": {"children": children, "parents": parents}},
            )
    return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.rows))
    base = results[0]["rows_per_s"]
    print("| route | rows | seconds | rows/s | vs data/write |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['route']} | {r['rows']:,} | {r['seconds']:.3f} | {r['rows_per_s']:,.0f} | "
            f"{r['rows_per_s'] / base:.2f}x |"
        )
    out = ROOT / ".bench-data" / "legacy_write.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

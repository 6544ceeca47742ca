"""Listing every file of a large organisation: items per second and client memory, by size.

For each size (default 10,000, 100,000 and 1,000,000 files) a local server's data directory is
seeded with that many confirmed files, written straight into its SQLite database in the
server's own schema (uploading a million files would measure uploads, not listings). The server
runs in its own process; each listing runs in a fresh child process, so that its peak RSS is the
client's alone:

* ``async``: ``async for f in AsyncLabric(...).files.list(page_size=N)``;
* ``sync``: ``for f in Labric(...).files.list(page_size=N)`` (the facade).

A listing whose cost per page grows with its depth shows here as items/s falling with the size;
the target is 1M within 20% of 10k. Memory should not grow with the size either: the pager holds
at most two pages.

Usage::

    python -m benchmarks.listing                          # 10k, 100k, 1M files
    python -m benchmarks.listing --sizes 10000,100000 --page-size 1000 --clients async

Results: a Markdown table on stdout and JSON in ``.bench-data/listing.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
_BATCH = 50_000


def seed_files(db_path: Path, org_id: str, count: int, *, start: float = 1_750_000_000.0) -> None:
    """Insert ``count`` confirmed files of ``org_id`` into a stopped server's database.

    Files are created a millisecond apart, some sharing a timestamp (so the listing's tie-break
    on insertion order is exercised too).
    """
    from labric.server.core.db import iso

    conn = sqlite3.connect(db_path)
    try:
        with conn:
            for first in range(0, count, _BATCH):
                rows = []
                for i in range(first, min(first + _BATCH, count)):
                    created = iso(start + (i - i % 3) / 1000)
                    name = f"read-{i:07d}.csv"
                    rows.append(
                        (
                            str(uuid.uuid4()),
                            org_id,
                            name,
                            f"runs/plate-{i % 97}/{name}",
                            created,
                            created,
                        )
                    )
                conn.executemany(
                    "INSERT INTO files (id, org_id, file_name, original_path, content_type, "
                    "size_bytes, crc32c, status, source_type, created_at, confirmed_at) "
                    "VALUES (?, ?, ?, ?, 'text/csv', 12288, 'yZRlqg==', 'confirmed', 'job', ?, ?)",
                    rows,
                )
    finally:
        conn.close()


# -- the server (its own process) -----------------------------------------------------------------


def serve(data_dir: str, count: int) -> None:
    """Seed ``data_dir`` with ``count`` files, serve it, print its address; stop at stdin's end."""
    from labric.server import LocalServer

    async def main() -> None:
        async with LocalServer(data_dir) as server:
            org_id = server.default_org_id
        seed_files(Path(data_dir) / "labric.db", org_id, count)
        async with LocalServer(data_dir) as server:
            print(json.dumps({"base_url": server.base_url, "key": server.admin_key}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


# -- one listing (its own process) ----------------------------------------------------------------


def list_all(mode: str, base_url: str, key: str, page_size: int) -> None:
    """List every file once; print the count, the seconds it took and the peak RSS in KiB."""
    import resource

    from labric import AsyncLabric, Labric

    count = 0
    started = time.perf_counter()
    if mode == "async":

        async def run() -> int:
            n = 0
            async with AsyncLabric(api_key=key, base_url=base_url) as client:
                async for _ in client.files.list(page_size=page_size):
                    n += 1
            return n

        count = asyncio.run(run())
    else:
        with Labric(api_key=key, base_url=base_url) as client:
            for _ in client.files.list(page_size=page_size):
                count += 1
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"count": count, "seconds": seconds, "peak_rss_kib": peak_kib}), flush=True)


# -- the driver -----------------------------------------------------------------------------------


def _child(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.listing", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        **kwargs,
    )


def measure(count: int, page_size: int, clients: list[str]) -> list[dict[str, Any]]:
    """Seed a server with ``count`` files and list them with each of ``clients``."""
    with tempfile.TemporaryDirectory(prefix="labric-listing-") as data_dir:
        seeding = time.perf_counter()
        server = _child("_serve", data_dir, str(count), stdin=subprocess.PIPE)
        try:
            assert server.stdout is not None
            address = json.loads(server.stdout.readline())
            seeded = time.perf_counter() - seeding
            results = []
            for mode in clients:
                lister = _child("_list", mode, address["base_url"], address["key"], str(page_size))
                out, _ = lister.communicate()
                if lister.returncode != 0:
                    raise RuntimeError(f"The {mode} listing failed ({lister.returncode})")
                got = json.loads(out)
                if got["count"] != count:
                    raise RuntimeError(f"The {mode} listing saw {got['count']} of {count} files")
                results.append(
                    {
                        "files": count,
                        "client": mode,
                        "page_size": page_size,
                        "seconds": round(got["seconds"], 2),
                        "items_per_s": round(count / got["seconds"]),
                        "peak_rss_mib": round(got["peak_rss_kib"] / 1024, 1),
                        "setup_s": round(seeded, 1),
                    }
                )
            return results
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=60)


def main(argv: list[str]) -> None:
    """Run the benchmark (see the module docstring)."""
    if argv and argv[0] == "_serve":
        serve(argv[1], int(argv[2]))
        return
    if argv and argv[0] == "_list":
        list_all(argv[1], argv[2], argv[3], int(argv[4]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing")
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in DEFAULT_SIZES),
        help="comma-separated file counts (default: %(default)s)",
    )
    parser.add_argument("--page-size", type=int, default=100, help="default: %(default)s")
    parser.add_argument(
        "--clients", default="async,sync", help="async, sync or both (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",") if n]
    clients = [c for c in args.clients.split(",") if c in ("async", "sync")]
    rows: list[dict[str, Any]] = []
    for count in sizes:
        rows += measure(count, args.page_size, clients)
        print(f"{count} files: done", file=sys.stderr, flush=True)
    print("| files | client | items/s | seconds | client peak RSS (MiB) |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['files']:,} | {r['client']} | {r['items_per_s']:,} | {r['seconds']} "
            f"| {r['peak_rss_mib']} |"
        )
    smallest, largest = min(sizes), max(sizes)
    for mode in clients:
        rate = {r["files"]: r["items_per_s"] for r in rows if r["client"] == mode}
        if smallest != largest:
            ratio = rate[largest] / rate[smallest]
            print(f"\n{mode}: {largest:,} vs {smallest:,} files: {ratio:.2f}x the items/s")
    out = ROOT / ".bench-data" / "listing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])

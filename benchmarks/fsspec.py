"""``labric://`` at scale: ``find`` over 100,000 files, sequential reads and ``cat_ranges``.

Each figure is a ratio to the same work done the plainest way:

* ``find``: ``fs.find(root)`` over N files (default 100,000, seeded straight into a stopped
  server's database in its own schema, as :mod:`benchmarks.listing` does) against the SDK's own
  paged listing of the same files (``files.list(query=..., page_size=1000)``): the server's
  listing speed. A ratio near 1 means ``find`` costs no request per file or per directory.
* sequential read: ``fs.open(path, block_size=B).read(chunk)`` to the end of a file (default
  64 MiB, 8 MiB blocks; fsspec's ``readahead`` cache, the default, and its ``background`` cache,
  which fetches the next block while the current one is read) against a raw aiohttp reader
  sending ``Range`` requests of the same size one after another to the same signed URL.
* ``cat_ranges``: R ranges of S bytes spread over the file (default 512 x 64 KiB) against raw
  aiohttp sending the same ranges with the same concurrency.

The server runs in its own process. Usage::

    python -m benchmarks.fsspec
    python -m benchmarks.fsspec --files 100000 --size-mib 64 --ranges 512 --repeat 3

Results: a Markdown table on stdout and JSON in ``.bench-data/fsspec.json``. Measured, never
asserted: the machine's load shows in the absolute figures, less in the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def _best(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


async def _raw_sequential(url: str, size: int, block: int) -> int:
    import aiohttp

    got = 0
    async with aiohttp.ClientSession() as session:
        for start in range(0, size, block):
            headers = {"Range": f"bytes={start}-{min(start + block, size) - 1}"}
            async with session.get(url, headers=headers) as resp:
                got += len(await resp.read())
    return got


async def _raw_ranges(url: str, wanted: list[tuple[int, int]], concurrency: int) -> int:
    import aiohttp

    limit = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, start: int, end: int) -> int:
        async with limit, session.get(url, headers={"Range": f"bytes={start}-{end - 1}"}) as resp:
            return len(await resp.read())

    async with aiohttp.ClientSession() as session:
        sizes = await asyncio.gather(*(one(session, s, e) for s, e in wanted))
    return sum(sizes)


def run(files: int, size_mib: int, block_mib: int, ranges: int, range_kib: int, repeat: int) -> Any:
    from labric import AsyncLabric, Labric
    from labric.fsspec import LabricFileSystem

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="labric-fsspec-bench-") as data_dir:
        seeding = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.listing", "_serve", data_dir, str(files)],
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            address = json.loads(server.stdout.readline())
            setup_s = time.perf_counter() - seeding
            key, base_url = address["key"], address["base_url"]
            size = size_mib * MiB
            data = random.Random(7).randbytes(size)
            with Labric(key, base_url=base_url) as sdk:
                big = sdk.files.upload(data, name="bench/big.bin")
                url = sdk.files.content(big.file_id).download_url
            rows: list[dict[str, Any]] = []
            fs = LabricFileSystem(key, base_url=base_url, use_listings_cache=False)
            try:
                # -- find over every seeded file vs the SDK's listing of them ----------------
                found: list[Any] = []

                def find() -> None:
                    found[:] = fs.find("runs")

                async def listing() -> int:
                    async with AsyncLabric(key, base_url=base_url) as client:
                        pager = client.files.list(query="runs/", page_size=1000)
                        return sum([1 async for _ in pager])

                listed = [0]

                def raw_list() -> None:
                    listed[0] = asyncio.run(listing())

                t_find = _best(find, repeat)
                t_list = _best(raw_list, repeat)
                assert len(found) == files == listed[0], (len(found), listed[0])
                rows.append(
                    {
                        "what": f"find over {files:,} files",
                        "labric_s": round(t_find, 3),
                        "raw_s": round(t_list, 3),
                        "labric_rate": f"{files / t_find:,.0f} files/s",
                        "ratio": round(t_list / t_find, 2),
                    }
                )
                # -- sequential read -----------------------------------------------------------
                block = block_mib * MiB

                def raw_sequential() -> None:
                    assert asyncio.run(_raw_sequential(url, size, block)) == size

                t_raw = _best(raw_sequential, repeat)
                for cache in ("readahead", "background"):

                    def sequential(cache: str = cache) -> None:
                        with fs.open("bench/big.bin", block_size=block, cache_type=cache) as f:
                            got = 0
                            while chunk := f.read(MiB):
                                got += len(chunk)
                        assert got == size

                    t_seq = _best(sequential, repeat)
                    rows.append(
                        {
                            "what": f"sequential read, {size_mib} MiB, {block_mib} MiB blocks, "
                            f"cache_type={cache}",
                            "labric_s": round(t_seq, 3),
                            "raw_s": round(t_raw, 3),
                            "labric_rate": f"{size / t_seq / MiB:,.0f} MiB/s",
                            "ratio": round(t_raw / t_seq, 2),
                        }
                    )
                # -- cat_ranges ----------------------------------------------------------------
                length = range_kib * 1024
                step = (size - length) // max(1, ranges - 1)  # may overlap on a small file
                wanted = [(i * step, i * step + length) for i in range(ranges)]
                concurrency = fs._width(None)

                def cat_ranges() -> None:
                    out = fs.cat_ranges(
                        ["bench/big.bin"] * ranges, [s for s, _ in wanted], [e for _, e in wanted]
                    )
                    assert out[-1] == data[wanted[-1][0] : wanted[-1][1]]

                def raw_ranges() -> None:
                    assert asyncio.run(_raw_ranges(url, wanted, concurrency)) == ranges * length

                t_cat = _best(cat_ranges, repeat)
                t_rawr = _best(raw_ranges, repeat)
                rows.append(
                    {
                        "what": f"cat_ranges, {ranges} x {range_kib} KiB, {concurrency} at once",
                        "labric_s": round(t_cat, 3),
                        "raw_s": round(t_rawr, 3),
                        "labric_rate": f"{ranges / t_cat:,.0f} ranges/s",
                        "ratio": round(t_rawr / t_cat, 2),
                    }
                )
            finally:
                fs.close()
            return rows, setup_s
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=60)


def main(argv: list[str]) -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fsspec")
    parser.add_argument("--files", type=int, default=100_000, help="default: %(default)s")
    parser.add_argument("--size-mib", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--block-mib", type=int, default=8, help="default: %(default)s")
    parser.add_argument("--ranges", type=int, default=512, help="default: %(default)s")
    parser.add_argument("--range-kib", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default: %(default)s)")
    args = parser.parse_args(argv)
    rows, setup_s = run(
        args.files, args.size_mib, args.block_mib, args.ranges, args.range_kib, args.repeat
    )
    print(f"(server seeded with {args.files:,} files in {setup_s:.1f} s)\n")
    print("| what | labric:// s | raw s | labric:// rate | ratio (raw time / labric time) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['what']} | {r['labric_s']} | {r['raw_s']} | {r['labric_rate']} | {r['ratio']} |"
        )
    out = ROOT / ".bench-data" / "fsspec.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Start-up cost: ``import labric`` and ``labric --version`` beside ``import aiohttp``.

Each case is a fresh interpreter (``python -X importtime`` is not used: its own bookkeeping
slows the imports it measures); the figure is the median wall time of N runs, with the time of
a bare ``python -c pass`` shown for reference. Cases alternate round by round, so drift on a busy
machine hits them all. Target: ``import labric`` within 1.25x ``import aiohttp``; ``labric
--version`` and ``--help`` never import aiohttp (asserted by ``tests/cli/test_first_hour.py``).

Usage::

    python -m benchmarks.startup              # 15 runs of each case
    python -m benchmarks.startup --runs 40

Results: a Markdown table on stdout and JSON in ``.bench-data/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import aiohttp": [sys.executable, "-c", "import aiohttp"],
    "import labric": [sys.executable, "-c", "import labric"],
    "from labric import Labric": [sys.executable, "-c", "from labric import Labric"],
    "labric --version": [sys.executable, "-m", "labric.cli", "--version"],
    "labric --help": [sys.executable, "-m", "labric.cli", "--help"],
}


def _time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup")
    parser.add_argument("--runs", type=int, default=15, help="runs of each case (15)")
    args = parser.parse_args(argv)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, command in CASES.items():
            samples[name].append(_time_once(command))
    medians = {name: statistics.median(times) for name, times in samples.items()}
    base = medians["import aiohttp"]
    print("| case | median (s) | x import aiohttp |")
    print("|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "startup.json").write_text(
        json.dumps({"runs": args.runs, "median_seconds": medians}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main(sys.argv[1:])

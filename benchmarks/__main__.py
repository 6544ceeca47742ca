"""``python -m benchmarks [NAME [ARGS...]]``: run one benchmark, or every one with defaults."""

import importlib
import sys

NAMES = [
    "startup",
    "facade",
    "transfer",
    "datasets_write",
    "load",
    "soak",
    "listing",
    "agent_stream",
    "console",
    "ml_models",
    "annotations",
    "fsspec",
    "server",
]

if len(sys.argv) > 1 and sys.argv[1] in NAMES:
    importlib.import_module(f"benchmarks.{sys.argv[1]}").main(sys.argv[2:])
else:
    for name in NAMES:
        print(f"## {name}\n", flush=True)
        importlib.import_module(f"benchmarks.{name}").main([])

"""ML models benchmark: training time per quality preset, and predictions through the API.

The server runs in its own process (``labric serve`` on a fresh data directory). A table of N
rows (four numeric features and a text one; a binary target that depends on two of them, and a
numeric one) is written, then for each preset a classifier and a regressor are trained and
waited for with ``client.ml_models.wait``. Predictions for all N rows go in batches of 1,000
rows per request, and the same rows are predicted in this process by the very model file the
server stored (unpickled, the same batches): the ratio of the two rates is what the API costs
per prediction (JSON both ways, a request per batch, the row checks). Each is timed three
times, alternating, and the best kept.

Usage::

    python -m benchmarks.ml_models                  # 10,000 rows
    python -m benchmarks.ml_models --rows 50000 --presets medium_quality

Results: a Markdown table on stdout and JSON in ``.bench-data/ml_models.json``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.transfer import start_server

ROOT = Path(__file__).resolve().parent.parent
TABLE = "cultures"
BATCH = 1000
REPEATS = 3


def rows(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        od = (i * 7919 % 1000) / 1000
        temp = 25 + (i * 104729 % 150) / 10
        out.append(
            {
                "od600": od,
                "temperature": temp,
                "ph": 6 + (i * 31 % 20) / 10,
                "hours": float(i % 48),
                "medium": ("LB", "M9", "TB")[i % 3],
                "grew": od * 10 + (temp - 25) > 8,
                "yield_g": 2.5 * od + 0.1 * temp + (i % 7) / 100,
            }
        )
    return out


def _columns() -> list[dict[str, str]]:
    floats = ["od600", "temperature", "ph", "hours", "yield_g"]
    return [
        *({"name": c, "type": "float"} for c in floats),
        {"name": "medium", "type": "text"},
        {"name": "grew", "type": "boolean"},
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument(
        "--presets", default="medium_quality,good_quality", help="comma-separated presets"
    )
    args = parser.parse_args(argv)
    from labric import Labric

    work = Path(tempfile.mkdtemp(prefix="labric-bench-ml-"))
    server, base_url, key = start_server(work / "server")
    results: list[dict[str, Any]] = []
    data = rows(args.rows)
    features = ["od600", "temperature", "ph", "hours", "medium"]
    try:
        with Labric(key, base_url=base_url, timeout=600) as client:
            table = client.datasets.create(TABLE, columns=_columns())
            client.datasets.write(TABLE, data)
            inputs = [{k: r[k] for k in features} for r in data]
            for preset in args.presets.split(","):
                for target in ("grew", "yield_g"):
                    started = time.perf_counter()
                    model = client.ml_models.train(
                        dataset_id=table.id or 0,
                        target_column=target,
                        name=f"{target}-{preset}",
                        feature_columns=features,
                        quality_preset=preset,
                    )
                    model = client.ml_models.wait(model.id)
                    trained_s = time.perf_counter() - started
                    api_s = direct_s = float("inf")
                    for _ in range(REPEATS):  # alternated, best of each: a busy machine
                        started = time.perf_counter()
                        for i in range(0, len(inputs), BATCH):
                            client.ml_models.predict(inputs[i : i + BATCH], ml_model_id=model.id)
                        api_s = min(api_s, time.perf_counter() - started)
                        direct_s = min(direct_s, _direct(work / "server" / "ml_models", inputs))
                    results.append(
                        {
                            "preset": preset,
                            "target": target,
                            "status": str(model.status),
                            "metrics": model.evaluation_metrics,
                            "train_s": trained_s,
                            "predict_rows_per_s": len(inputs) / api_s,
                            "direct_rows_per_s": len(inputs) / direct_s,
                        }
                    )
    finally:
        server.terminate()
        server.wait()
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "ml_models.json").write_text(json.dumps({"rows": args.rows, "runs": results}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.rows:,} rows\n")
    print("| preset | target | model | score | train s | predict rows/s (API) | API / direct |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in results:
        m = r["metrics"] or {}
        score = m.get("accuracy", m.get("r2"))
        print(
            f"| {r['preset']} | {r['target']} | {m.get('model')} | {score:.3f} | "
            f"{r['train_s']:.1f} | {r['predict_rows_per_s']:,.0f} | "
            f"{r['predict_rows_per_s'] / r['direct_rows_per_s']:.2f} |"
        )


def _direct(models_dir: Path, inputs: list[dict[str, Any]]) -> float:
    """Seconds to predict ``inputs`` in this process with the newest stored model."""
    from labric.server.ml_models.trainers.tabular import TRAINER

    newest = max(models_dir.glob("*/*.pkl"), key=lambda p: p.stat().st_mtime)
    with open(newest, "rb") as f:
        model = pickle.load(f)
    started = time.perf_counter()
    for i in range(0, len(inputs), BATCH):
        TRAINER.predict(model, inputs[i : i + BATCH])
    return time.perf_counter() - started


if __name__ == "__main__":
    main()

"""Image annotation benchmark: masks saved per second through ``client.images.annotate``.

The server runs in its own process (``labric serve`` on a fresh data directory); the client in
this one. For each image size, batches of masks (each a few random rectangles, white on
transparent) are saved on one image, then listed. The floor to compare with is the server's own
per-mask work done in-process without HTTP: :func:`labric.server.images.pixels.decode_mask` on
the same masks (base64, PNG decode, measuring, re-encoding the normalised PNG). The ratio says
what HTTP, JSON, the blob writes (each fsynced) and the database add to it.

Usage::

    python -m benchmarks.annotations                    # 256, 1024 and 2048 px squares
    python -m benchmarks.annotations --sizes 512 --batch 50 --batches 4

Results: a Markdown table on stdout and JSON in ``.bench-data/annotations.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.transfer import start_server

ROOT = Path(__file__).resolve().parent.parent


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def masks(size: int, n: int, seed: int) -> list[str]:
    """``n`` base64 masks of ``size`` x ``size``, each 1 to 4 random rectangles."""
    from PIL import Image  # noqa: TID251 (the benchmark draws its own masks)

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        for _ in range(rng.randint(1, 4)):
            x, y = rng.randrange(size), rng.randrange(size)
            w, h = rng.randint(1, size // 3), rng.randint(1, size // 3)
            im.paste((255, 255, 255, 255), (x, y, min(size, x + w), min(size, y + h)))
        out.append(base64.b64encode(_png(im)).decode("ascii"))
    return out


def floor(encoded: list[str]) -> float:
    """Seconds the server's per-mask work takes in-process, for all of ``encoded``."""
    from labric.server.images import pixels

    started = time.perf_counter()
    for text in encoded:
        pixels.decode_mask(text)
    return time.perf_counter() - started


async def run(base_url: str, key: str, size: int, batch: int, batches: int) -> dict[str, Any]:
    from PIL import Image  # noqa: TID251

    from labric import AsyncLabric

    encoded = masks(size, batch * batches, seed=size)
    async with AsyncLabric(key, base_url=base_url) as client:
        execution = await client.jobs.executions.start(job_name=f"bench {size}")
        image = await client.files.upload(
            _png(Image.new("RGB", (size, size), "gray")),
            name=f"bench/{size}.png",
            job_execution_id=execution.job_execution_id,
        )
        started = time.perf_counter()
        for i in range(batches):
            chunk = encoded[i * batch : (i + 1) * batch]
            await client.images.annotate(
                image.file_id, [{"mask": m, "label": f"l{i % 3}"} for m in chunk]
            )
        saved_s = time.perf_counter() - started
        started = time.perf_counter()
        listed = await client.images.annotations(image.file_id)
        list_s = time.perf_counter() - started
    assert len(listed) == len(encoded), "masks went missing"
    floor_s = floor(encoded)
    total = len(encoded)
    return {
        "size": size,
        "masks": total,
        "batch": batch,
        "mean_mask_bytes": sum(len(m) for m in encoded) / total,
        "masks_per_s": total / saved_s,
        "mpix_per_s": total * size * size / saved_s / 1e6,
        "floor_masks_per_s": total / floor_s,
        "ratio_to_floor": (total / saved_s) / (total / floor_s),
        "list_s": list_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--batch", type=int, default=20, help="masks per annotate request")
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="labric-bench-annotations-"))
    server, base_url, key = start_server(work / "server")
    try:
        results = [
            asyncio.run(run(base_url, key, size, args.batch, args.batches)) for size in args.sizes
        ]
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / ".bench-data"
    out.mkdir(exist_ok=True)
    (out / "annotations.json").write_text(json.dumps(results, indent=2))
    print(
        "| image | masks (per request) | mask KiB | masks/s | Mpx/s | in-process floor masks/s "
        "| × floor | list all s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['size']}² | {r['masks']} ({r['batch']}) | {r['mean_mask_bytes'] / 1024:.1f} | "
            f"{r['masks_per_s']:.1f} | {r['mpix_per_s']:.1f} | {r['floor_masks_per_s']:.1f} | "
            f"{r['ratio_to_floor']:.2f} | {r['list_s']:.3f} |"
        )


if __name__ == "__main__":
    main()

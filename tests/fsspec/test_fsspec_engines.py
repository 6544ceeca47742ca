"""pandas and Dask reading (and writing) CSV files on the local server through ``labric://``.

Each result is compared with the same engine reading the same files from a local directory.
"""

from __future__ import annotations

import random
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest

from labric.fsspec import LabricFileSystem


def plate_csv(plate: int, rows: int = 96) -> str:
    """A plate reader's export: one row per well, absorbance at two wavelengths."""
    rng = random.Random(plate)
    lines = ["plate,well,od600,od450,flag"]
    for n in range(rows):
        well = f"{'ABCDEFGH'[n // 12]}{n % 12 + 1}"
        flag = rng.choice(["", "bubble", "edge"])
        lines.append(f"{plate},{well},{rng.random():.4f},{rng.random():.4f},{flag}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def run(tmp_path: Path, fs: LabricFileSystem, root: str) -> Path:
    """Five plates written locally and put on the platform under ``<root>/run``."""
    local = tmp_path / "run"
    local.mkdir()
    for plate in range(5):
        (local / f"plate{plate}.csv").write_text(plate_csv(plate))
    (local / "notes.txt").write_text("not a plate\n")
    fs.put(str(local), f"{root}/run", recursive=True)
    return local


def test_pandas_read_csv_matches_the_local_file(
    run: Path, root: str, options: dict[str, str]
) -> None:
    remote = pd.read_csv(f"labric://{root}/run/plate3.csv", storage_options=options)
    local = pd.read_csv(run / "plate3.csv")
    pd.testing.assert_frame_equal(remote, local)
    assert len(remote) == 96


def test_pandas_to_csv_then_read_back(
    tmp_path: Path, fs: LabricFileSystem, root: str, options: dict[str, str]
) -> None:
    frame = pd.DataFrame({"well": ["A1", "A2"], "od600": [0.25, 0.5]})
    frame.to_csv(f"labric://{root}/out/summary.csv", index=False, storage_options=options)
    assert fs.exists(f"{root}/out/summary.csv")
    back = pd.read_csv(f"labric://{root}/out/summary.csv", storage_options=options)
    pd.testing.assert_frame_equal(back, frame)


@pytest.mark.parametrize("blocksize", [None, 1024])
def test_dask_read_csv_of_a_glob_matches_the_local_files(
    run: Path, root: str, options: dict[str, str], blocksize: int | None
) -> None:
    """``blocksize=1024`` splits each file into byte ranges read with seeks and delimiters."""
    remote = dd.read_csv(f"labric://{root}/run/*.csv", storage_options=options, blocksize=blocksize)
    local = dd.read_csv(str(run / "*.csv"), blocksize=blocksize)
    assert remote.npartitions == local.npartitions
    got = remote.compute(scheduler="threads")
    expected = local.compute(scheduler="sync")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert len(got) == 5 * 96
    assert sorted(got["plate"].unique()) == [0, 1, 2, 3, 4]

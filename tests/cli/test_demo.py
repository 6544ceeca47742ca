"""``labric demo`` end to end, as a subprocess, at a small size."""

from __future__ import annotations

import re
from pathlib import Path

from ._support import run_labric

SMALL = ("--plates", "2", "--reads", "3", "--big-mib", "1")


def _summary(out: str) -> dict[str, str]:
    """The summary block's lines, keyed by their first word."""
    block = out.split("\nSummary\n", 1)[1]
    return {
        line.split(None, 1)[0]: line.split(None, 1)[1].strip()
        for line in block.splitlines()
        if line.startswith("  ")
    }


def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    done = run_labric("demo", *SMALL, env={"TMPDIR": str(tmp_path)})
    assert done.code == 0, done.out + done.err
    assert "Traceback" not in done.err
    lines = done.out.splitlines()
    assert lines[0] == "Generated a plate-reader run: 6 CSV reads and 1 raw file(s), 1.0 MiB"
    assert lines[-1] == "OK"
    # Piped stdout: progress as plain lines, no bar redrawn with \r.
    assert "\r" not in done.out
    assert any(line.startswith("upload    7/7 files") for line in lines)
    assert any(line.startswith("download  7/7 files") for line in lines)
    assert "Parser job completed: wrote 576 rows in 1 requests" in lines

    summary = _summary(done.out)
    assert summary["files"] == "7 uploaded, downloaded and verified (SHA-256)"
    assert summary["bytes"] == "1.0 MiB each way"
    assert re.fullmatch(r"\d+\.\d\d s \(\d+ MiB/s, \d+ files/s\)", summary["upload"])
    assert re.fullmatch(r"\d+\.\d\d s \(\d+ MiB/s\)", summary["download"])
    assert summary["dataset"] == "plate_reads: 576 rows parsed by the job"
    data_dir, note = summary["data"].removeprefix("dir").strip().split(" ", 1)
    assert note == "(removed at exit; --keep keeps it)"
    assert Path(data_dir).is_relative_to(tmp_path)
    # Everything the demo wrote (run, downloads, server data) is gone.
    assert not Path(data_dir).exists()
    assert list(tmp_path.iterdir()) == []


def test_demo_keep_and_a_data_dir_of_ones_own(tmp_path: Path) -> None:
    data_dir = tmp_path / "mine"
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = run_labric(
        "demo", *SMALL, "--keep", "--data-dir", str(data_dir), env={"TMPDIR": str(temp)}
    )
    assert done.code == 0, done.out + done.err
    lines = done.out.splitlines()
    assert lines[-2] == "OK"
    kept = Path(lines[-1].removeprefix("Kept "))
    assert kept.parent == temp
    assert len(list((kept / "back" / "run").rglob("*.csv"))) == 6
    # The data directory asked for is the one used, said as it is, and left in place.
    assert _summary(done.out)["data"].removeprefix("dir").strip() == str(data_dir)
    assert (data_dir / "admin.key").is_file()

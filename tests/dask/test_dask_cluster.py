"""``labric.dask`` on a real ``LocalCluster`` with two worker processes.

The server runs as a ``labric serve`` subprocess (its own interpreter, so the workers, the
scheduler and the server do not share one GIL); the cluster and the server serve the whole
module, each test under a directory of its own. The scheduler gives up on a task at its first
lost worker (``allowed-failures: 0``), so a killed worker shows in the call's outcomes and the
test repeats the call itself.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import dask
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

import labric.dask  # noqa: E402
from labric import Labric, TransferConfig  # noqa: E402
from labric.models import TransferProgress  # noqa: E402
from labric.models.transfers import TransferPhase  # noqa: E402

# The kill switch below runs on the workers, which cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

STARTUP_TIMEOUT = 60


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A ``labric serve`` subprocess; its key and base URL."""
    data_dir = tmp_path_factory.mktemp("dask") / "server"
    proc = subprocess.Popen(
        [sys.executable, "-m", "labric.cli", "serve", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    found: dict[str, str] = {}
    try:
        while len(found) < 2:
            line = proc.stdout.readline()
            assert line, "labric serve exited before printing its address"
            name, _, value = line.strip().partition("=")
            if name in ("LABRIC_API_BASE_URL", "LABRIC_API_KEY"):
                found[name] = value
        yield {"api_key": found["LABRIC_API_KEY"], "base_url": found["LABRIC_API_BASE_URL"]}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(STARTUP_TIMEOUT)
        proc.stdout.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "transfer-state"


@pytest.fixture
def sdk(served: dict[str, str], state_dir: Path) -> Iterator[Labric]:
    with Labric(**served, transfer=TransferConfig(state_dir=str(state_dir))) as client:
        yield client


def _tree(root: Path, count: int, plates: int = 10) -> list[Path]:
    files = []
    for i in range(count):
        path = root / f"plate{i % plates}" / f"read{i:05d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"well,value\nA{i},{i}\nB{i},{i * 2}\n")
        files.append(path)
    return files


def _listed(sdk: Labric, top: str) -> Counter[str]:
    """How many files the server holds at each path under ``top``."""
    return Counter(
        f.original_path for f in sdk.files.list(query=f"{top}/") if f.original_path is not None
    )


def test_two_thousand_files_up_and_down_in_input_order(
    cluster: distributed.Client, sdk: Labric, tmp_path: Path
) -> None:
    top = f"run{uuid.uuid4().hex[:8]}"
    files = _tree(tmp_path / top, 2000)
    sources = [str(p) for p in files]

    uploaded = labric.dask.upload_many(sources, cluster=cluster, client=sdk)

    assert [o.source for o in uploaded] == sources  # input order, sources as given
    assert all(o.ok for o in uploaded), [o.error for o in uploaded if not o.ok][:3]
    assert len({o.file.file_id for o in uploaded if o.file}) == 2000
    assert [o.file.file_name for o in uploaded if o.file] == [p.name for p in files]
    ids = [o.file.file_id for o in uploaded if o.file]

    downloaded = labric.dask.download_many(ids, tmp_path / "back", cluster=cluster, client=sdk)

    assert [o.file_id for o in downloaded] == ids
    assert all(o.ok for o in downloaded), [o.error for o in downloaded if not o.ok][:3]
    for original, outcome in zip(files, downloaded, strict=True):
        assert outcome.path is not None
        assert Path(outcome.path).read_bytes() == original.read_bytes()


def test_a_directory_keeps_its_relative_names_and_one_execution(
    cluster: distributed.Client, sdk: Labric, tmp_path: Path
) -> None:
    top = f"dir{uuid.uuid4().hex[:8]}"
    _tree(tmp_path / top, 40)

    outcomes = labric.dask.upload_many(
        [tmp_path / top, ("extra/notes.txt", b"by value")], cluster=cluster, client=sdk
    )

    assert all(o.ok for o in outcomes)
    assert outcomes[-1].source == ("extra/notes.txt", b"by value")
    listed = _listed(sdk, top)
    assert len(listed) == 40
    assert set(listed.values()) == {1}
    # One off-platform execution for the whole call, across every shard, closed completed.
    details = {sdk.files.get(o.file.file_id).job_execution_id for o in outcomes if o.file}
    assert len(details) == 1
    [execution] = details
    assert execution is not None
    assert sdk.jobs.executions.get(execution).status == "completed"


def test_a_dataframe_from_labric_csvs_equals_pandas_on_the_local_files(
    cluster: distributed.Client, sdk: Labric, served: dict[str, str], tmp_path: Path
) -> None:
    import dask.dataframe as dd

    top = f"df{uuid.uuid4().hex[:8]}"
    files = _tree(tmp_path / top, 60, plates=3)
    labric.dask.upload_many([tmp_path / top], cluster=cluster, client=sdk, raise_on_error=True)

    # Computed on the cluster: the filesystem travels to the workers pickled.
    remote = dd.read_csv(f"labric://{top}/*/*.csv", storage_options=served).compute()
    local = pd.concat([pd.read_csv(p) for p in sorted(files)])

    key = ["well", "value"]
    # Dask may pick another string dtype than pandas for the same text; the values must match.
    pd.testing.assert_frame_equal(
        remote.sort_values(key).reset_index(drop=True),
        local.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    assert len(remote) == 120


class _KillOnce:
    """A progress callback that SIGKILLs its worker at the ``after``-th confirmed file of a
    task, once per ``marker`` (created exclusively, so only one worker ever dies)."""

    def __init__(self, marker: Path, after: int) -> None:
        self.marker = marker
        self.after = after
        self.confirmed = 0

    def __call__(self, event: TransferProgress) -> None:
        if event.phase is not TransferPhase.COMPLETED:
            return
        self.confirmed += 1
        if self.confirmed < self.after:
            return
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_loses_and_duplicates_nothing_when_the_call_is_repeated(
    cluster: distributed.Client, sdk: Labric, state_dir: Path, tmp_path: Path
) -> None:
    top = f"kill{uuid.uuid4().hex[:8]}"
    files = _tree(tmp_path / top, 240)
    # (name, path) pairs: journalled as paths, listed under ``top`` on the server.
    sources = [(p.relative_to(tmp_path).as_posix(), str(p)) for p in files]
    kill = _KillOnce(tmp_path / "killed", after=20)

    first = labric.dask.upload_many(
        sources, cluster=cluster, client=sdk, files_per_task=60, concurrency=4, on_progress=kill
    )

    assert (tmp_path / "killed").exists()
    lost = [o for o in first if not o.ok]
    assert lost, "the killed worker's shard failed as a whole"
    assert all(isinstance(o.error, distributed.KilledWorker) for o in lost)
    assert {o.source for o in lost} <= set(sources)

    again = labric.dask.upload_many(sources, cluster=cluster, client=sdk, files_per_task=60)

    assert all(o.ok for o in again), [o.error for o in again if not o.ok][:3]
    done_first = {o.source for o in first if o.ok}
    # Uploads confirmed before the kill, in the dead worker's shard too, are found in the
    # journal and not sent again; nothing the first call finished is uploaded twice.
    skipped = {o.source for o in again if o.skipped}
    assert done_first <= skipped
    assert len(skipped - done_first) >= kill.after
    assert [o.file.file_id for o in again if o.source in done_first and o.file] == [
        o.file.file_id for o in first if o.ok and o.file
    ]
    # Exactly one file per path on the server: nothing lost, nothing duplicated.
    listed = _listed(sdk, top)
    assert len(listed) == 240
    assert set(listed.values()) == {1}
    # The journal every process shared is intact.
    with sqlite3.connect(state_dir / "journal.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM entries WHERE kind = 'upload'").fetchone()[0] >= 240


def test_a_source_that_cannot_travel_is_refused_before_anything_runs(
    cluster: distributed.Client, sdk: Labric, tmp_path: Path
) -> None:
    from labric.errors import UsageError

    with (
        open(_tree(tmp_path, 1)[0], "rb") as stream,
        pytest.raises(UsageError, match="travel to the workers"),
    ):
        labric.dask.upload_many([("x.csv", stream)], cluster=cluster, client=sdk)

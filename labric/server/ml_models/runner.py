"""The training runner: background training on a thread the application owns, and predictions.

Threads
    Training runs on one worker thread (:data:`TRAINING_THREADS`; more runs queue as
    ``pending``), never on the event loop. A run's state changes are written from that thread
    through :meth:`~labric.server.core.db.Database.run_sync`, each a conditional update (see
    :mod:`.store`), so a cancel racing the end of a run resolves cleanly. Predictions run on a
    small pool of their own, so a long training never delays them. Trained models are read back
    through a small cache of unpickled models (a model file never changes once written).

Cancellation
    ``cancel-training`` marks the versions ``cancelled`` in the database first (the answer says
    so at once), then sets each run's cancel event: the trainer stops at its next checkpoint,
    between fitting steps, and what it had fitted is dropped. A run cancelled while still
    queued never starts.

Files
    ``<data_dir>/ml_models/<org_id>/<version_id>.pkl``, written to a temporary name, synced and
    renamed, so a model file is whole or absent; the version row names it only once it is.
    At start, runs a previous process left pending or training are failed (their thread is
    gone), and temporary files are removed.

Shutdown
    :meth:`TrainingRunner.close` (on the application's cleanup) cancels every run, waits for
    the worker to stop at its checkpoint, records those runs as failed (the server stopped),
    and shuts both pools down, before the database closes.

Test hook
    :meth:`TrainingRunner.hold` makes runs wait at a named checkpoint until released or
    cancelled, so a test can cancel a run that is certainly in progress, without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import attrs

from labric.server.core.db import iso
from labric.server.core.state import ServerState
from labric.server.ml_models import store
from labric.server.ml_models.images import OrgImages
from labric.server.ml_models.trainers import (
    Cancelled,
    PredictContext,
    PredictOutcome,
    Trainer,
    TrainingContext,
    TrainingFailed,
    TrainSpec,
)

__all__ = ["PREDICT_THREADS", "TRAINING_THREADS", "Hold", "TrainingRunner"]

logger = logging.getLogger("labric.server.ml_models")

#: Training runs at once (the rest wait, pending).
TRAINING_THREADS = 1
#: Threads answering predictions.
PREDICT_THREADS = 2
#: Trained models kept unpickled in memory.
CACHED_MODELS = 8


class Hold:
    """A checkpoint where runs wait (a test hook; see :meth:`TrainingRunner.hold`).

    Args:
        step: The checkpoint's name; ``"fit"`` also holds ``"fit:random_forest"`` and the like.
    """

    def __init__(self, step: str, runner: TrainingRunner, loop: asyncio.AbstractEventLoop):
        self.step = step
        self.released = False
        #: Version ids that reached the checkpoint, in order.
        self.arrivals: list[str] = []
        self._runner = runner
        self._loop = loop
        self._arrived = asyncio.Event()

    def matches(self, step: str) -> bool:
        return step == self.step or step.startswith(self.step + ":")

    def _arrive(self, version_id: str) -> None:  # training thread, under the runner's lock
        self.arrivals.append(version_id)
        self._loop.call_soon_threadsafe(self._arrived.set)

    async def reached(self) -> str:
        """Wait until a run waits here; return its version id."""
        await self._arrived.wait()
        return self.arrivals[0]

    def release(self) -> None:
        """Let waiting and later runs through."""
        self._runner._release(self)


@attrs.define
class _Run:
    version_id: str
    org_id: str
    trainer: Trainer
    spec: TrainSpec
    cancel: threading.Event = attrs.field(factory=threading.Event)
    #: The checkpoint a cancelled run stopped at (for tests and logs).
    stopped_at: str | None = None


class TrainingRunner:
    """Background training and predictions of one server (see the module docstring).

    Args:
        state: The server's shared state (database, clock).
        root: The directory holding model files.
        datasets_root: The directory of the organisations' dataset files.
    """

    def __init__(self, state: ServerState, root: Path, datasets_root: Path) -> None:
        self._state = state
        self.root = root
        self._datasets_root = datasets_root
        self._trainer_pool = ThreadPoolExecutor(
            TRAINING_THREADS, thread_name_prefix="labric-ml-train"
        )
        self._predict_pool = ThreadPoolExecutor(
            PREDICT_THREADS, thread_name_prefix="labric-ml-predict"
        )
        self._runs: dict[str, _Run] = {}
        self._futures: dict[str, asyncio.Future[None]] = {}
        self._holds: list[Hold] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Version id -> the checkpoint where its cancelled run stopped.
        self.stopped: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<TrainingRunner {self.root} runs={len(self._runs)}>"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Fail the runs a previous process left unfinished; remove temporary files."""
        self._loop = asyncio.get_running_loop()
        await self._state.db.run(store.fail_abandoned, self._state.now())
        await asyncio.to_thread(self._sweep)

    def _sweep(self) -> None:
        if not self.root.is_dir():
            return
        for path in self.root.glob("*/*.tmp-*"):
            path.unlink(missing_ok=True)

    async def close(self) -> None:
        """Stop every run at its next checkpoint, wait for it, and stop the threads."""
        with self._cond:
            self._stopping = True
            for run in self._runs.values():
                run.cancel.set()
            self._cond.notify_all()
        pending = list(self._futures.values())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(self._trainer_pool.shutdown, True)
        await asyncio.to_thread(self._predict_pool.shutdown, True)

    # -- training ------------------------------------------------------------------------------

    def submit(self, org_id: str, version_id: str, trainer: Trainer, spec: TrainSpec) -> None:
        """Queue a pending version's training."""
        run = _Run(version_id=version_id, org_id=org_id, trainer=trainer, spec=spec)
        with self._cond:
            if self._stopping:
                raise RuntimeError("The server is stopping")
            self._runs[version_id] = run
        future = asyncio.wrap_future(self._trainer_pool.submit(self._train, run))
        self._futures[version_id] = future
        future.add_done_callback(lambda _: self._futures.pop(version_id, None))

    def cancel(self, version_ids: Sequence[str]) -> None:
        """Stop these runs at their next checkpoint (their rows are already ``cancelled``)."""
        with self._cond:
            for version_id in version_ids:
                run = self._runs.get(version_id)
                if run is not None:
                    run.cancel.set()
            self._cond.notify_all()

    async def wait(self, version_id: str | None = None) -> None:
        """Wait until a run (or every queued run) has ended."""
        if version_id is not None:
            future = self._futures.get(version_id)
            pending = [] if future is None else [future]
        else:
            pending = list(self._futures.values())
        if pending:
            await asyncio.gather(*(asyncio.shield(f) for f in pending), return_exceptions=True)

    async def settled(self, version_ids: Sequence[str], timeout: float) -> None:
        """Wait up to ``timeout`` seconds for these runs to end (those not queued here have)."""
        pending = [f for v in version_ids if (f := self._futures.get(v)) is not None]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def hold(self, step: str) -> Hold:
        """Make runs wait at checkpoint ``step`` until the hold is released or they are
        cancelled (a test hook)."""
        hold = Hold(step, self, asyncio.get_running_loop())
        with self._cond:
            self._holds.append(hold)
        return hold

    def _release(self, hold: Hold) -> None:
        with self._cond:
            hold.released = True
            if hold in self._holds:
                self._holds.remove(hold)
            self._cond.notify_all()

    def _checkpoint(self, run: _Run, step: str) -> None:
        """Raise :class:`Cancelled` if the run was cancelled; wait while a hold says so."""
        with self._cond:
            arrived: set[int] = set()
            while True:
                if run.cancel.is_set() or self._stopping:
                    run.stopped_at = step
                    raise Cancelled(step)
                holding = [h for h in self._holds if h.matches(step)]
                if not holding:
                    return
                for h in holding:
                    if id(h) not in arrived:
                        arrived.add(id(h))
                        h._arrive(run.version_id)
                self._cond.wait()

    def _now(self) -> str:
        return iso(self._state.clock())

    def _train(self, run: _Run) -> None:
        """One run, on the training thread."""
        db = self._state.db
        try:
            if run.cancel.is_set() or not db.run_sync(store.start, run.version_id, self._now()):
                return  # cancelled while queued
            ctx = TrainingContext(
                spec=run.spec,
                dataset_path=self._datasets_root / f"{run.org_id}.sqlite3",
                checkpoint=lambda step: self._checkpoint(run, step),
                images=self._images(run.org_id),
            )
            try:
                trained = run.trainer.train(ctx)
                self._checkpoint(run, "save")
                artifact = self._write(run, trained.model)
            except Cancelled as exc:
                self.stopped[run.version_id] = str(exc)
                if self._stopping:
                    error = "The server stopped before training finished; train again"
                    db.run_sync(
                        partial(store.finish, error=error), run.version_id, "failed", self._now()
                    )
                # else: cancel-training already marked it cancelled
                return
            except TrainingFailed as exc:
                db.run_sync(
                    partial(store.finish, error=str(exc)), run.version_id, "failed", self._now()
                )
                return
            except Exception as exc:
                logger.exception("Training version %s failed", run.version_id)
                error = f"Training failed: {type(exc).__name__}: {exc}"
                db.run_sync(
                    partial(store.finish, error=error), run.version_id, "failed", self._now()
                )
                return
            ready = partial(
                store.finish,
                problem_type=trained.problem_type,
                metrics=trained.metrics,
                artifact=artifact,
            )
            finished = db.run_sync(ready, run.version_id, "ready", self._now())
            if not finished:  # cancelled after the last checkpoint: nothing may serve it
                (self.root / artifact).unlink(missing_ok=True)
        finally:
            with self._cond:
                self._runs.pop(run.version_id, None)

    def _write(self, run: _Run, model: Any) -> str:
        """Store a trained model atomically; return its path under :attr:`root`."""
        directory = self.root / run.org_id
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{run.version_id}.pkl"
        final = directory / name
        temporary = directory / f"{name}.tmp-{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as f:
                pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return f"{run.org_id}/{name}"

    # -- predictions ---------------------------------------------------------------------------

    def _load(self, artifact: str) -> Any:
        with self._cache_lock:
            found = self._cache.get(artifact)
            if found is not None:
                self._cache.move_to_end(artifact)
                return found
        with open(self.root / artifact, "rb") as f:
            model = pickle.load(f)  # our own file, written by _write
        with self._cache_lock:
            self._cache[artifact] = model
            while len(self._cache) > CACHED_MODELS:
                self._cache.popitem(last=False)
        return model

    def _images(self, org_id: str) -> OrgImages:
        assert self._loop is not None, "the runner was not started"
        return OrgImages(self._state, org_id, self._loop)

    async def predict(
        self,
        trainer: Trainer,
        artifact: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        org_id: str,
        options: Mapping[str, Any],
    ) -> PredictOutcome:
        """Check the rows against the stored model, then predict, on a prediction thread.

        Args:
            trainer: The model's trainer.
            artifact: The model file.
            rows: The request's rows.
            org_id: The calling organisation (whose images a segmentation model reads).
            options: The request's task-specific parameters that were sent.

        Raises:
            HTTPError: 422 naming the rows' problems.
        """
        ctx = PredictContext(options=options, images=self._images(org_id))

        def run() -> PredictOutcome:
            model = self._load(artifact)
            trainer.check_rows(model, rows)
            return trainer.predict(model, rows, ctx)

        return await asyncio.wrap_future(self._predict_pool.submit(run))

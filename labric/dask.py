"""Bulk transfers on a Dask cluster: ``upload_many`` and ``download_many`` sharded over its workers.

One machine's ``files.upload_many`` is bounded by its network and disks; a campaign of millions of
files goes faster spread over a cluster. :func:`upload_many` and :func:`download_many` take the
arguments of the client's methods of the same names, cut the files into shards, run each shard as
one task (the client's own ``upload_many``/``download_many`` on a worker) and return one
:class:`~labric.models.UploadOutcome` / :class:`~labric.models.DownloadOutcome` per input, in
input order, exactly as the single-machine calls do::

    from distributed import Client
    import labric.dask

    with Client(n_workers=8) as cluster:
        outcomes = labric.dask.upload_many(["/shared/run42/"], cluster=cluster)
        failed = [o for o in outcomes if not o.ok]

``distributed`` is an optional dependency (``pip install 'labric[distributed]'``); ``import
labric`` never imports it.

How it runs
    Sources are expanded on the caller's machine (directories walked, globs matched, relative
    paths made absolute), so every worker must see them at the same paths: a shared filesystem,
    or a ``LocalCluster``. ``(name, bytes)`` pairs travel with their task; open streams cannot.
    The caller's client is pickled into every task as its configuration (never a session); a
    task opens a client of its own on the worker, runs the shard, and closes it. Without
    ``job_execution_id`` or ``instrument_id`` (and outside a job), one off-platform execution
    is opened for the whole call and closed ``completed`` (``failed`` if any file failed), as
    ``upload_many`` does on one machine.

Failure
    One bad file never hides the others: its outcome holds its error. A shard whose task failed
    as a whole (its worker died, say) gives each of its files an outcome holding that error, so
    nothing is silently missing; calling again resumes. Uploads of paths are journalled
    (``TransferConfig.state_dir``, one journal shared safely by every process of a machine): a
    file the server confirmed before the failure is not sent again (its outcome says
    ``skipped``), a multipart upload sends only its missing parts, and no file is uploaded twice.
    ``raise_on_error=True`` raises the first error after every shard has run.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

try:
    import distributed
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "labric.dask needs distributed, an optional dependency: pip install 'labric[distributed]'"
    ) from exc

import attrs

from labric._client import AsyncLabric, _rebuild
from labric._core.config import ClientConfig
from labric._core.context import current_execution_id
from labric._sync import Labric
from labric._transfer.bulk import expand_sources
from labric._transfer.progress import ProgressCallback
from labric.errors import TransferError, UsageError
from labric.models.transfers import DownloadOutcome, UploadOutcome

__all__ = ["DEFAULT_SHARDS_PER_WORKER", "MAX_FILES_PER_TASK", "download_many", "upload_many"]

#: Shards per worker when ``files_per_task`` is not given: a few each, so a slow shard or a lost
#: worker holds back a small part of the call.
DEFAULT_SHARDS_PER_WORKER = 4
#: The most files one task moves when ``files_per_task`` is not given.
MAX_FILES_PER_TASK = 2_000

T = TypeVar("T")
OutcomeT = TypeVar("OutcomeT", UploadOutcome, DownloadOutcome)


def upload_many(
    sources: Iterable[Any],
    *,
    cluster: distributed.Client | None = None,
    client: Labric | AsyncLabric | None = None,
    files_per_task: int | None = None,
    concurrency: int | None = None,
    instrument_id: str | None = None,
    job_execution_id: str | None = None,
    content_type: str | None = None,
    skip_existing: bool = False,
    raise_on_error: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[UploadOutcome]:
    """Upload many files from a Dask cluster's workers; one outcome per file, in input order.

    Args:
        sources: Paths, directories, globs, or ``(name, data)`` pairs (``data`` a path or
            bytes), as for ``files.upload_many``; the workers must see the paths.
        cluster: The ``distributed.Client`` of the cluster (default: the current one).
        client: Whose configuration (key, URL, transfer settings) the workers use (default:
            ``Labric()``, from the environment of this process).
        files_per_task: Files per task (default: enough for a few tasks per worker, at most
            :data:`MAX_FILES_PER_TASK`).
        concurrency: Most requests in flight per task (default: the transfer concurrency).
        instrument_id: Attach every file to this instrument.
        job_execution_id: Record every file under this execution (default: the running job's,
            else one off-platform execution for the whole call, closed at the end).
        content_type: Force one content type (default: guessed per file).
        skip_existing: Skip files whose name and CRC32C already match a file on the platform.
        raise_on_error: After every shard ran, raise the first error (with the count noted).
        on_progress: Called on the workers with each task's progress events (it must pickle);
            the caller sees the outcomes.

    Returns:
        An :class:`~labric.models.UploadOutcome` per file (``.ok``, ``.file``, ``.error``),
        ``source`` as expanded here (a path for directory and glob entries).

    Raises:
        UsageError: a source that cannot travel to a worker (an open stream, say).
    """
    items: list[tuple[object, Any]] = []
    for original, src, name in expand_sources(sources):
        items.append((original, _portable(src, name)))
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "content_type": content_type,
        "skip_existing": skip_existing,
        "on_progress": on_progress,
    }
    if instrument_id is not None:
        options["instrument_id"] = instrument_id
    execution = job_execution_id or current_execution_id()
    with _driver(client) as labric:
        opened = None
        if execution is None and instrument_id is None and items:
            opened = labric.jobs.executions.start().id
            execution = opened
        if execution is not None:
            options["job_execution_id"] = execution
        try:
            outcomes = _run_sharded(
                cluster,
                labric,
                _upload_shard,
                [shipped for _, shipped in items],
                options,
                files_per_task,
                lambda shipped, error: UploadOutcome(source=shipped, error=error),
            )
        except BaseException:
            if opened is not None:
                _close_quietly(labric, opened, "failed")
            raise
        outcomes = [
            attrs.evolve(o, source=original)
            for o, (original, _) in zip(outcomes, items, strict=True)
        ]
        if opened is not None:
            ok = all(o.ok for o in outcomes)
            problem = _close_quietly(labric, opened, "completed" if ok else "failed")
            if problem is not None:
                outcomes = [attrs.evolve(o, warnings=(*o.warnings, problem)) for o in outcomes]
    if raise_on_error:
        _raise_first([o.error for o in outcomes])
    return outcomes


def download_many(
    file_ids: Iterable[str],
    dest_dir: str | os.PathLike[str],
    *,
    cluster: distributed.Client | None = None,
    client: Labric | AsyncLabric | None = None,
    files_per_task: int | None = None,
    concurrency: int | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    raise_on_error: bool = False,
    on_progress: ProgressCallback | None = None,
) -> list[DownloadOutcome]:
    """Download many files on a Dask cluster's workers into ``dest_dir``; one outcome per id,
    in order.

    Each file lands at its platform path under ``dest_dir``, verified and renamed into place,
    as with ``files.download_many``. The workers must see ``dest_dir`` at the same path (a shared
    filesystem, or a ``LocalCluster``). Two ids whose files share a path are caught within a task
    (the second fails); across tasks, the second fails unless ``overwrite``, when one wins.

    Args:
        file_ids: The files.
        dest_dir: The directory to write into (created if missing).
        cluster: The ``distributed.Client`` of the cluster (default: the current one).
        client: Whose configuration the workers use (default: ``Labric()``, from the
            environment of this process).
        files_per_task: Files per task (default: a few tasks per worker, at most
            :data:`MAX_FILES_PER_TASK`).
        concurrency: Most requests in flight per task (default: the transfer concurrency).
        overwrite: Replace existing files.
        skip_existing: Leave a local file alone when its CRC32C already matches.
        raise_on_error: After every shard ran, raise the first error.
        on_progress: Called on the workers with each task's progress events (it must pickle).

    Returns:
        A :class:`~labric.models.DownloadOutcome` per id (``.ok``, ``.path``, ``.error``).
    """
    ids = list(file_ids)
    target = os.path.abspath(os.fspath(dest_dir))
    options: dict[str, Any] = {
        "concurrency": concurrency,
        "overwrite": overwrite,
        "skip_existing": skip_existing,
        "on_progress": on_progress,
    }
    with _driver(client) as labric:
        outcomes = _run_sharded(
            cluster,
            labric,
            _download_shard,
            ids,
            {**options, "dest_dir": target},
            files_per_task,
            lambda file_id, error: DownloadOutcome(file_id=file_id, error=error),
        )
    if raise_on_error:
        _raise_first([o.error for o in outcomes])
    return outcomes


# -- on the caller's machine ----------------------------------------------------------------------


def _portable(src: Any, name: str | None) -> Any:
    """An expanded source as a task carries it: absolute paths, bytes; nothing open."""
    if isinstance(src, str | os.PathLike):
        path = os.path.abspath(os.fspath(src))
        return path if name is None else (name, path)
    if isinstance(src, bytes | bytearray) and name is not None:
        return (name, bytes(src))
    raise UsageError(
        f"labric.dask uploads paths and (name, bytes) pairs, which travel to the workers; got "
        f"{type(src).__name__} (an open stream or iterator stays in this process: write it to "
        "a file the workers can see, or upload it with client.files.upload)"
    )


class _driver:
    """The client the caller's process uses: the one given, as a blocking client."""

    def __init__(self, given: Labric | AsyncLabric | None) -> None:
        self._given = given
        self._own: Labric | None = None

    def __enter__(self) -> Labric:
        if isinstance(self._given, Labric):
            return self._given
        if isinstance(self._given, AsyncLabric):
            # Same configuration, blocking: this call blocks, and the async client's session
            # belongs to its own loop.
            self._own = _copy(self._given)
        else:
            self._own = Labric()
        return self._own

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.close()


def _copy(client: AsyncLabric) -> Labric:
    rebuilt: Labric = _rebuild(Labric, client.config)
    return rebuilt


def _close_quietly(labric: Labric, execution_id: str, status: str) -> str | None:
    """Close the execution this call opened; the failure as a warning line, or ``None``.

    Never raised: the files are uploaded whatever happens here, and a caller retrying would
    upload them again.
    """
    try:
        labric.jobs.executions.close(execution_id, status=status)
    except Exception as exc:
        return (
            f"Closing job execution {execution_id} as {status} failed ({exc}); the upload "
            "itself is unaffected"
        )
    return None


def _shard_sizes(total: int, workers: int, files_per_task: int | None) -> list[int]:
    """How many files each task gets: contiguous shards, in input order, covering ``total``.

    Without ``files_per_task``, about :data:`DEFAULT_SHARDS_PER_WORKER` shards per worker, none
    over :data:`MAX_FILES_PER_TASK`; shards differ in size by at most one file.
    """
    if total <= 0:
        return []
    if files_per_task is not None:
        if files_per_task < 1:
            raise ValueError("files_per_task must be at least 1")
        count = math.ceil(total / files_per_task)
    else:
        count = max(
            max(1, workers) * DEFAULT_SHARDS_PER_WORKER, math.ceil(total / MAX_FILES_PER_TASK)
        )
    count = min(count, total)
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _run_sharded(
    cluster: distributed.Client | None,
    labric: Labric,
    task: Callable[..., list[OutcomeT]],
    items: Sequence[T],
    options: dict[str, Any],
    files_per_task: int | None,
    failed: Callable[[T, BaseException], OutcomeT],
) -> list[OutcomeT]:
    """Run ``task`` over contiguous shards of ``items`` on the cluster; outcomes in order.

    A shard whose task failed gives each of its items ``failed(item, error)``.
    """
    if not items:
        return []
    dask = cluster if cluster is not None else distributed.get_client()
    workers = len(dask.scheduler_info().get("workers", {}))
    shards: list[Sequence[T]] = []
    start = 0
    for size in _shard_sizes(len(items), workers, files_per_task):
        shards.append(items[start : start + size])
        start += size
    # The client travels as its configuration (its repr hides the key), never a session.
    config = labric.config
    futures = [dask.submit(task, config, list(shard), options, pure=False) for shard in shards]
    try:
        distributed.wait(futures)  # type: ignore[no-untyped-call]
        out: list[OutcomeT] = []
        for future, shard in zip(futures, shards, strict=True):
            if future.status == "finished":
                out.extend(future.result())
            else:
                error = _task_error(future)
                out.extend(failed(item, error) for item in shard)
        return out
    except BaseException:
        dask.cancel(futures)  # type: ignore[no-untyped-call]
        raise


def _task_error(future: Any) -> BaseException:
    error = future.exception()
    if isinstance(error, BaseException):
        return error
    return TransferError(f"The task {future.key} ended as {future.status}")


def _raise_first(errors: list[BaseException | None]) -> None:
    failed = [e for e in errors if e is not None]
    if not failed:
        return
    first = failed[0]
    if len(failed) > 1:
        first.add_note(f"{len(failed)} of {len(errors)} transfers failed; this is the first.")
    if isinstance(first, Exception):
        raise first
    raise TransferError(str(first)) from first


# -- on a worker ---------------------------------------------------------------------------------


def _upload_shard(
    config: ClientConfig, sources: list[Any], options: dict[str, Any]
) -> list[UploadOutcome]:
    """One task: ``upload_many`` of a shard with a client of the task's own."""

    async def run(client: AsyncLabric) -> list[UploadOutcome]:
        return await client.files.upload_many(sources, **options)

    return _on_worker(config, run)


def _download_shard(
    config: ClientConfig, file_ids: list[str], options: dict[str, Any]
) -> list[DownloadOutcome]:
    """One task: ``download_many`` of a shard with a client of the task's own."""
    options = dict(options)
    dest_dir = Path(options.pop("dest_dir"))

    async def run(client: AsyncLabric) -> list[DownloadOutcome]:
        return await client.files.download_many(file_ids, dest_dir, **options)

    return _on_worker(config, run)


def _on_worker(config: ClientConfig, run: Callable[[AsyncLabric], Awaitable[T]]) -> T:
    """Run ``run`` with a new async client of ``config``, then close it.

    Tasks run on a worker's threads, outside any event loop; each opens a loop and a client of
    its own, which opens its session on first use (no connection or session travelled).
    """

    async def main() -> T:
        client: AsyncLabric = _rebuild(AsyncLabric, config)
        async with client:
            return await run(client)

    return asyncio.run(main())

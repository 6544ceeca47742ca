"""One call of every sync resource method against the real local server."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labric import Labric, Page
from labric._portal import SyncResource
from labric.errors import NotFoundError, PortalUsageError
from labric.models.files import FileContent, FileInfo, FileUpload, UploadStatus
from labric.models.jobs import ExecutionStatus, OffPlatformExecution

DATA = b"sample,value\n1,2\n3,4\n"


class Ctx:
    """What a smoke call may need: a client, an uploaded file, a scratch directory."""

    def __init__(self, client: Labric, tmp_path: Path) -> None:
        self.client = client
        self.tmp = tmp_path
        self.file = client.files.upload(DATA, name=f"smoke/{tmp_path.name}.csv")


def _list(ctx: Ctx) -> None:
    pager = ctx.client.files.list(query=ctx.tmp.name, page_size=1)
    assert isinstance(pager.first_page(), Page)
    assert [f.file_id for f in pager] == [ctx.file.file_id]


def _get(ctx: Ctx) -> None:
    info = ctx.client.files.get(ctx.file.file_id)
    assert isinstance(info, FileInfo)
    assert info.size_bytes == len(DATA)


def _content(ctx: Ctx) -> None:
    content = ctx.client.files.content(ctx.file.file_id)
    assert isinstance(content, FileContent)
    assert content.text_preview == DATA.decode()


def _delete(ctx: Ctx) -> None:
    ctx.client.files.delete(ctx.file.file_id)
    with pytest.raises(NotFoundError):
        ctx.client.files.get(ctx.file.file_id)


def _upload(ctx: Ctx) -> None:
    assert isinstance(ctx.file, FileUpload)
    assert ctx.file.size_bytes == len(DATA)


def _upload_many(ctx: Ctx) -> None:
    outcomes = ctx.client.files.upload_many([("a.txt", b"a"), ("b.txt", b"bb")])
    assert [o.ok for o in outcomes] == [True, True]


def _upload_status(ctx: Ctx) -> None:
    status = ctx.client.files.upload_status(ctx.file.file_id)
    assert isinstance(status, UploadStatus)
    assert status.status == "confirmed"


def _download(ctx: Ctx) -> None:
    path = ctx.client.files.download(ctx.file.file_id, ctx.tmp / "out.csv")
    assert path.read_bytes() == DATA


def _download_many(ctx: Ctx) -> None:
    outcomes = ctx.client.files.download_many([ctx.file.file_id], ctx.tmp / "many")
    assert outcomes[0].ok
    assert outcomes[0].path is not None
    assert outcomes[0].path.read_bytes() == DATA


def _read_bytes(ctx: Ctx) -> None:
    assert ctx.client.files.read_bytes(ctx.file.file_id) == DATA


def _executions_start(ctx: Ctx) -> None:
    execution = ctx.client.jobs.executions.start(job_name="smoke")
    assert isinstance(execution, OffPlatformExecution)
    assert execution.status is ExecutionStatus.RUNNING


def _executions_close(ctx: Ctx) -> None:
    execution = ctx.client.jobs.executions.start(job_name="smoke")
    closed = ctx.client.jobs.executions.close(execution.job_execution_id, status="completed")
    assert closed.status is ExecutionStatus.COMPLETED


SMOKE: dict[str, Callable[[Ctx], None]] = {
    "files.list": _list,
    "files.get": _get,
    "files.content": _content,
    "files.delete": _delete,
    "files.upload": _upload,
    "files.upload_many": _upload_many,
    "files.upload_status": _upload_status,
    "files.download": _download,
    "files.download_many": _download_many,
    "files.read_bytes": _read_bytes,
    "jobs.executions.start": _executions_start,
    "jobs.executions.close": _executions_close,
}


def sync_methods(obj: object, path: str) -> Iterator[str]:
    """``files.get``, ``jobs.executions.start``, ...: every public method reachable from ``obj``."""
    for name, value in vars(obj).items():
        if isinstance(value, SyncResource):
            where = f"{path}{name}"
            for method, member in inspect.getmembers(type(value)):
                if not method.startswith("_") and inspect.isfunction(member):
                    yield f"{where}.{method}"
            yield from sync_methods(value, f"{where}.")


def test_every_sync_method_has_a_smoke_call(local_client: Labric) -> None:
    missing = sorted(set(sync_methods(local_client, "")) - set(SMOKE))
    assert missing == [], f"add smoke calls for {missing}"


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_smoke(name: str, local_client: Labric, tmp_path: Path) -> None:
    SMOKE[name](Ctx(local_client, tmp_path))


def test_callbacks_in_the_loop_thread_cannot_call_the_sync_client(
    local_client: Labric, tmp_path: Path
) -> None:
    # on_progress runs in the client's loop thread: a blocking call from there must fail fast.
    seen: list[BaseException] = []

    def on_progress(_event: Any) -> None:
        if not seen:
            try:
                local_client.files.list().first_page()
            except PortalUsageError as exc:
                seen.append(exc)

    local_client.files.upload(DATA, name="cb.csv", on_progress=on_progress)
    assert len(seen) == 1
    assert "own event-loop thread" in str(seen[0])

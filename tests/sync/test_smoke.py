"""One call of every sync resource method against the real local server."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _masks import image_png, mask_b64

from labric import Labric, Page
from labric._blocking.portal import SyncResource
from labric.errors import BadRequestError, NotFoundError, PortalUsageError
from labric.models.agent import AgentRunResponse, RunResult, ToolCall
from labric.models.dashboards import Dashboard, MetricWidget, SQLSource, TextWidget, WidgetData
from labric.models.datasets import (
    BatchWriteResult,
    Column,
    TableInfo,
    TableWrite,
    WriteProgress,
)
from labric.models.experiments import Experiment, ExperimentRow
from labric.models.files import FileContent, FileInfo, FileUpload, UploadStatus
from labric.models.images import Annotation, SaveAnnotation
from labric.models.instruments import DeviceStatusHistory, InstrumentPairing, PairedDevice
from labric.models.jobs import (
    ExecutionLogs,
    ExecutionStatus,
    Job,
    JobExecution,
    OffPlatformExecution,
    RevertResult,
)
from labric.models.ml_models import MlModel, Prediction
from labric.models.notifications import Notification, SentNotification

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


def _copy(ctx: Ctx) -> None:
    copy = ctx.client.files.copy(ctx.file.file_id, original_path=f"copies/{ctx.tmp.name}.csv")
    assert isinstance(copy, FileInfo)
    assert copy.file_id != ctx.file.file_id
    assert ctx.client.files.read_bytes(copy.file_id) == DATA


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


JOB_CODE = "print('smoke job ran')\n"


def _job(ctx: Ctx) -> Job:
    return ctx.client.jobs.create(name=f"smoke-{ctx.tmp.name}", code=JOB_CODE)


def _jobs_create(ctx: Ctx) -> None:
    job = _job(ctx)
    assert isinstance(job, Job)
    assert job.code == JOB_CODE


def _jobs_get(ctx: Ctx) -> None:
    assert ctx.client.jobs.get(_job(ctx).id).code == JOB_CODE


def _jobs_list(ctx: Ctx) -> None:
    job = _job(ctx)
    assert [j.id for j in ctx.client.jobs.list(name=job.name)] == [job.id]


def _jobs_update(ctx: Ctx) -> None:
    job = _job(ctx)
    assert ctx.client.jobs.update(job.id, description="smoke").description == "smoke"


def _jobs_archive(ctx: Ctx) -> None:
    assert ctx.client.jobs.archive(_job(ctx).id).archived is True


def _finished_run(ctx: Ctx) -> JobExecution:
    execution = ctx.client.jobs.run(_job(ctx).id)
    return ctx.client.jobs.wait(execution.job_execution_id, timeout=60)


def _jobs_run(ctx: Ctx) -> None:
    assert _finished_run(ctx).status is ExecutionStatus.COMPLETED


def _jobs_wait(ctx: Ctx) -> None:
    finished = _finished_run(ctx)
    assert isinstance(finished, JobExecution)
    assert finished.exit_code == 0


def _executions_logs(ctx: Ctx) -> None:
    logs = ctx.client.jobs.executions.logs(_finished_run(ctx).job_execution_id)
    assert isinstance(logs, ExecutionLogs)
    assert "smoke job ran" in logs.text


def _executions_list(ctx: Ctx) -> None:
    execution = ctx.client.jobs.executions.start(job_name=f"smoke-{ctx.tmp.name}")
    listed = ctx.client.jobs.executions.list(job_id=execution.job_id)
    assert [e.job_execution_id for e in listed] == [execution.job_execution_id]


def _executions_get(ctx: Ctx) -> None:
    execution = ctx.client.jobs.executions.start(job_name="smoke")
    got = ctx.client.jobs.executions.get(execution.job_execution_id)
    assert got.off_platform is True


def _executions_revert(ctx: Ctx) -> None:
    execution = ctx.client.jobs.executions.start(job_name="smoke")
    result = ctx.client.jobs.executions.revert(execution.job_execution_id)
    assert isinstance(result, RevertResult)


def _jobs_track(ctx: Ctx) -> None:
    with ctx.client.jobs.track(job_name="smoke") as execution:
        upload = ctx.client.files.upload(DATA, name=f"tracked/{ctx.tmp.name}.csv")
    info = ctx.client.files.get(upload.file_id)
    assert info.job_execution_id == execution.job_execution_id
    closed = ctx.client.jobs.executions.get(execution.job_execution_id)
    assert closed.status is ExecutionStatus.COMPLETED


def _dataset(ctx: Ctx, raw: bool = False) -> str:
    """A fresh table (with a raw twin of series when ``raw``) and its name."""
    name = f"t{uuid.uuid4().hex[:12]}"
    ctx.client.datasets.create(name, columns=[{"name": "n", "type": "integer"}])
    if raw:
        ctx.client.datasets.create(
            f"{name}_raw",
            semantic_category="raw",
            columns=[{"name": "parent", "foreign_key": name}, {"name": "y", "type": "float"}],
        )
    return name


def _datasets_create(ctx: Ctx) -> None:
    name = "smoke_" + uuid.uuid4().hex[:8]
    table = ctx.client.datasets.create(name, columns=[Column(name="x", type="text")])
    assert isinstance(table, TableInfo)


def _datasets_list(ctx: Ctx) -> None:
    name = _dataset(ctx)
    assert name in [t.name for t in ctx.client.datasets.list()]


def _datasets_get(ctx: Ctx) -> None:
    name = _dataset(ctx)
    assert ctx.client.datasets.get(name).name == name


def _datasets_write(ctx: Ctx) -> None:
    name = _dataset(ctx)
    seen: list[WriteProgress] = []
    summary = ctx.client.datasets.write(name, ({"n": i} for i in range(5)), on_progress=seen.append)
    assert (summary.created, [e.rows_done for e in seen]) == (5, [5])


def _datasets_rows(ctx: Ctx) -> None:
    name = _dataset(ctx)
    ctx.client.datasets.write(name, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert [r["n"] for r in ctx.client.datasets.rows(name, page_size=2)] == [1, 2, 3]


def _datasets_query(ctx: Ctx) -> None:
    name = _dataset(ctx)
    ctx.client.datasets.write(name, [{"n": 4}])
    result = ctx.client.datasets.query(f"SELECT n FROM {name} WHERE n = %s", [4])
    assert list(result.rows()) == [{"n": 4}]


def _datasets_write_series(ctx: Ctx) -> None:
    name = _dataset(ctx, raw=True)
    parent = ctx.client.datasets.write(name, [{"n": 1}]).ids[0]
    result = ctx.client.datasets.write_series(f"{name}_raw", parent=parent, columns={"y": [1.0]})
    assert result.series[0].points_written == 1


def _datasets_transact(ctx: Ctx) -> None:
    name = _dataset(ctx)
    result = ctx.client.datasets.transact([TableWrite(table=name, rows=[{"_ref": "a", "n": 1}])])
    assert list(result.refs) == ["a"]


def _datasets_tools_write(ctx: Ctx) -> None:
    name = _dataset(ctx)
    with pytest.warns(DeprecationWarning, match="data/write"):
        rows = ctx.client.datasets.tools_write(name, [{"n": 1}, {"n": 2}])
    assert [r["n"] for r in rows] == [1, 2]


def _datasets_batch_write(ctx: Ctx) -> None:
    name = _dataset(ctx)
    with pytest.warns(DeprecationWarning, match="data/write"):
        result = ctx.client.datasets.batch_write({name: [{"_ref": "a", "n": 1}]})
    assert isinstance(result, BatchWriteResult)
    assert list(result.refs) == ["a"]
    assert result.summary[name].created == 1


def _instrument(ctx: Ctx) -> str:
    return ctx.client.instruments.create(name=f"smoke-{ctx.tmp.name}").instrument.id


def _instruments_create(ctx: Ctx) -> None:
    made = ctx.client.instruments.create(name="smoke", metadata={"bench": 1})
    assert isinstance(made, InstrumentPairing)
    assert made.pairing_code


def _instruments_get(ctx: Ctx) -> None:
    instrument_id = _instrument(ctx)
    assert ctx.client.instruments.get(instrument_id).id == instrument_id


def _instruments_list(ctx: Ctx) -> None:
    instrument_id = _instrument(ctx)
    assert instrument_id in [i.id for i in ctx.client.instruments.list(page_size=1)]


def _instruments_update(ctx: Ctx) -> None:
    updated = ctx.client.instruments.update(_instrument(ctx), description="north bench")
    assert updated.description == "north bench"


def _instruments_delete(ctx: Ctx) -> None:
    instrument_id = _instrument(ctx)
    ctx.client.instruments.delete(instrument_id, force=True)
    with pytest.raises(NotFoundError):
        ctx.client.instruments.get(instrument_id)


def _instruments_pairing_code(ctx: Ctx) -> None:
    assert ctx.client.instruments.pairing_code(_instrument(ctx)).pairing_code


def _instruments_pair(ctx: Ctx) -> None:
    made = ctx.client.instruments.create(name="smoke")
    device = ctx.client.instruments.pair(made.pairing_code)
    assert isinstance(device, PairedDevice)
    assert device.instrument.id == made.instrument.id


def _instruments_report_status(ctx: Ctx) -> None:
    report = ctx.client.instruments.report_status(_instrument(ctx), status="online")
    assert report.current_status is not None
    assert report.current_status.value == "online"


def _instruments_device_status(ctx: Ctx) -> None:
    instrument_id = _instrument(ctx)
    ctx.client.instruments.report_status(instrument_id, status="error", app_version="1.0")
    history = ctx.client.instruments.device_status(instrument_id)
    assert isinstance(history, DeviceStatusHistory)
    assert [p.status for p in history.statuses] == ["error"]


def _experiment(ctx: Ctx) -> str:
    return ctx.client.experiments.create(name=f"smoke-{ctx.tmp.name}", tags=[ctx.tmp.name]).id


def _experiments_create(ctx: Ctx) -> None:
    made = ctx.client.experiments.create(name="smoke", status="running")
    assert isinstance(made, Experiment)
    assert made.started_at is not None


def _experiments_get(ctx: Ctx) -> None:
    experiment_id = _experiment(ctx)
    assert ctx.client.experiments.get(experiment_id).id == experiment_id


def _experiments_list(ctx: Ctx) -> None:
    experiment_id = _experiment(ctx)
    assert [e.id for e in ctx.client.experiments.list(tag=ctx.tmp.name)] == [experiment_id]


def _experiments_update(ctx: Ctx) -> None:
    assert ctx.client.experiments.update(_experiment(ctx), status="completed").ended_at


def _experiments_delete(ctx: Ctx) -> None:
    experiment_id = _experiment(ctx)
    ctx.client.experiments.delete(experiment_id)
    with pytest.raises(NotFoundError):
        ctx.client.experiments.get(experiment_id)


def _experiments_link_files(ctx: Ctx) -> None:
    links = ctx.client.experiments.link_files(_experiment(ctx), [ctx.file.file_id])
    assert (links.linked, links.total) == (1, 1)


def _experiments_files(ctx: Ctx) -> None:
    experiment_id = _experiment(ctx)
    ctx.client.experiments.link_files(experiment_id, [ctx.file.file_id])
    assert [f.file_id for f in ctx.client.experiments.files(experiment_id)] == [ctx.file.file_id]


def _experiments_unlink_file(ctx: Ctx) -> None:
    experiment_id = _experiment(ctx)
    ctx.client.experiments.link_files(experiment_id, [ctx.file.file_id])
    ctx.client.experiments.unlink_file(experiment_id, ctx.file.file_id)
    assert list(ctx.client.experiments.files(experiment_id)) == []


def _experiments_link_rows(ctx: Ctx) -> None:
    name = _dataset(ctx)
    row_id = ctx.client.datasets.write(name, [{"n": 1}]).ids[0]
    links = ctx.client.experiments.link_rows(_experiment(ctx), [(name, str(row_id))])
    assert links.linked == 1


def _experiments_rows(ctx: Ctx) -> None:
    name = _dataset(ctx)
    row_id = ctx.client.datasets.write(name, [{"n": 1}]).ids[0]
    experiment_id = _experiment(ctx)
    ctx.client.experiments.link_rows(experiment_id, [(name, str(row_id))])
    assert ctx.client.experiments.rows(experiment_id) == [
        ExperimentRow(table=name, row_id=str(row_id))
    ]


def _dashboard(ctx: Ctx) -> Dashboard:
    return ctx.client.dashboards.create(
        name=f"smoke-{ctx.tmp.name}",
        widgets=[
            TextWidget(id="note", markdown="hello"),
            MetricWidget(id="one", source=SQLSource(query="SELECT 1")),
        ],
    )


def _dashboards_create(ctx: Ctx) -> None:
    assert [w.id for w in _dashboard(ctx).widgets] == ["note", "one"]


def _dashboards_get(ctx: Ctx) -> None:
    board = _dashboard(ctx)
    assert ctx.client.dashboards.get(board.id) == board


def _dashboards_list(ctx: Ctx) -> None:
    board = _dashboard(ctx)
    assert board.id in [d.id for d in ctx.client.dashboards.list(page_size=1)]


def _dashboards_update(ctx: Ctx) -> None:
    board = _dashboard(ctx)
    assert ctx.client.dashboards.update(board.id, name="renamed").name == "renamed"


def _dashboards_delete(ctx: Ctx) -> None:
    board = _dashboard(ctx)
    ctx.client.dashboards.delete(board.id)
    with pytest.raises(NotFoundError):
        ctx.client.dashboards.get(board.id)


def _dashboards_widget_data(ctx: Ctx) -> None:
    data = ctx.client.dashboards.widget_data(_dashboard(ctx).id, "one")
    assert isinstance(data, WidgetData)
    assert data.value == 1


def _dashboards_render(ctx: Ctx) -> None:
    pytest.importorskip("matplotlib")
    target = ctx.client.dashboards.render(_dashboard(ctx).id, ctx.tmp / "board.png", dpi=20)
    assert target.read_bytes()[:4] == b"\x89PNG"


def _agent_run(ctx: Ctx) -> None:
    answer = ctx.client.agent.run("Run `SELECT 6 * 7 AS n`")
    assert isinstance(answer, AgentRunResponse)
    assert answer.tool_calls[0].output["data"] == [[42]]


def _agent_stream(ctx: Ctx) -> None:
    with ctx.client.agent.stream("list tables") as events:
        seen = list(events)
    assert isinstance(seen[1], ToolCall)
    assert isinstance(seen[-1], RunResult)
    assert seen[-1].result.tool_calls[0].tool_name == "list_tables"


def _notifications_send(ctx: Ctx) -> None:
    key = f"smoke-{ctx.tmp.name}"
    sent = ctx.client.notifications.send("smoke", dedupe_key=key, action_url="/jobs/1")
    assert isinstance(sent, SentNotification)
    assert sent.status == "delivered"
    assert ctx.client.notifications.send("smoke", dedupe_key=key).status == "deduplicated"


def _notifications_list(ctx: Ctx) -> None:
    sent = ctx.client.notifications.send(ctx.tmp.name, dedupe_key=f"smoke-list-{ctx.tmp.name}")
    newest = ctx.client.notifications.list(page_size=1).first_page()
    assert isinstance(newest, Page)
    assert [(n.id, n.title) for n in newest] == [(sent.id, ctx.tmp.name)]
    assert all(isinstance(n, Notification) for n in ctx.client.notifications.list(limit=3))


def _ml_model(ctx: Ctx, *, wait: bool = True) -> MlModel:
    """A model trained on a fresh table whose ``y`` is ``x >= 10``."""
    pytest.importorskip("sklearn")
    name = f"ml_{uuid.uuid4().hex[:12]}"
    table = ctx.client.datasets.create(
        name, columns=[{"name": "x", "type": "float"}, {"name": "y", "type": "boolean"}]
    )
    ctx.client.datasets.write(name, [{"x": float(i), "y": i >= 10} for i in range(20)])
    assert table.id is not None
    model = ctx.client.ml_models.train(dataset_id=table.id, target_column="y", name=name)
    return ctx.client.ml_models.wait(model.id) if wait else model


def _ml_models_train(ctx: Ctx) -> None:
    model = _ml_model(ctx, wait=False)
    assert isinstance(model, MlModel)
    assert model.version_number == 1


def _ml_models_wait(ctx: Ctx) -> None:
    assert _ml_model(ctx).status == "ready"


def _ml_models_get(ctx: Ctx) -> None:
    model = _ml_model(ctx)
    assert ctx.client.ml_models.get(model.id) == model


def _ml_models_list(ctx: Ctx) -> None:
    model = _ml_model(ctx)
    assert ctx.client.ml_models.list(page_size=1).first_page()[0].id == model.id


def _ml_models_predict(ctx: Ctx) -> None:
    model = _ml_model(ctx)
    result = ctx.client.ml_models.predict([{"x": 1.0}, {"x": 18.0}], ml_model_id=model.id)
    assert isinstance(result, Prediction)
    assert result.predictions == [False, True]


def _ml_models_cancel_training(ctx: Ctx) -> None:
    model = _ml_model(ctx)
    with pytest.raises(BadRequestError):  # nothing in flight
        ctx.client.ml_models.cancel_training(model.id)


def _image(ctx: Ctx) -> str:
    return str(ctx.client.files.upload(image_png(6, 4), name=f"{ctx.tmp.name}.png").file_id)


def _images_annotate(ctx: Ctx) -> None:
    image = _image(ctx)
    entry = SaveAnnotation(mask=mask_b64(6, 4, [(0, 0, 2, 2)]), label="cell")
    (saved,) = ctx.client.images.annotate(image, [entry])
    assert isinstance(saved, Annotation)
    assert saved.foreground_fraction == 4 / 24


def _images_annotations(ctx: Ctx) -> None:
    image = _image(ctx)
    ctx.client.images.annotate(image, [{"mask": mask_b64(6, 4), "label": "empty"}])
    (listed,) = ctx.client.images.annotations(image)
    assert (listed.label, listed.bbox) == ("empty", None)


SMOKE: dict[str, Callable[[Ctx], None]] = {
    "datasets.create": _datasets_create,
    "datasets.get": _datasets_get,
    "datasets.list": _datasets_list,
    "datasets.query": _datasets_query,
    "datasets.rows": _datasets_rows,
    "datasets.transact": _datasets_transact,
    "datasets.write": _datasets_write,
    "datasets.write_series": _datasets_write_series,
    "datasets.tools_write": _datasets_tools_write,
    "datasets.batch_write": _datasets_batch_write,
    "files.list": _list,
    "files.get": _get,
    "files.content": _content,
    "files.delete": _delete,
    "files.copy": _copy,
    "files.upload": _upload,
    "files.upload_many": _upload_many,
    "files.upload_status": _upload_status,
    "files.download": _download,
    "files.download_many": _download_many,
    "files.read_bytes": _read_bytes,
    "jobs.executions.start": _executions_start,
    "jobs.executions.close": _executions_close,
    "jobs.executions.get": _executions_get,
    "jobs.executions.list": _executions_list,
    "jobs.executions.logs": _executions_logs,
    "jobs.executions.revert": _executions_revert,
    "jobs.create": _jobs_create,
    "jobs.get": _jobs_get,
    "jobs.list": _jobs_list,
    "jobs.update": _jobs_update,
    "jobs.archive": _jobs_archive,
    "jobs.run": _jobs_run,
    "jobs.wait": _jobs_wait,
    "jobs.track": _jobs_track,
    "instruments.create": _instruments_create,
    "instruments.delete": _instruments_delete,
    "instruments.device_status": _instruments_device_status,
    "instruments.get": _instruments_get,
    "instruments.list": _instruments_list,
    "instruments.pair": _instruments_pair,
    "instruments.pairing_code": _instruments_pairing_code,
    "instruments.report_status": _instruments_report_status,
    "instruments.update": _instruments_update,
    "experiments.create": _experiments_create,
    "experiments.delete": _experiments_delete,
    "experiments.files": _experiments_files,
    "experiments.get": _experiments_get,
    "experiments.link_files": _experiments_link_files,
    "experiments.link_rows": _experiments_link_rows,
    "experiments.list": _experiments_list,
    "experiments.rows": _experiments_rows,
    "experiments.unlink_file": _experiments_unlink_file,
    "experiments.update": _experiments_update,
    "dashboards.create": _dashboards_create,
    "dashboards.delete": _dashboards_delete,
    "dashboards.get": _dashboards_get,
    "dashboards.list": _dashboards_list,
    "dashboards.render": _dashboards_render,
    "dashboards.update": _dashboards_update,
    "dashboards.widget_data": _dashboards_widget_data,
    "notifications.list": _notifications_list,
    "notifications.send": _notifications_send,
    "agent.run": _agent_run,
    "agent.stream": _agent_stream,
    "ml_models.cancel_training": _ml_models_cancel_training,
    "ml_models.get": _ml_models_get,
    "ml_models.list": _ml_models_list,
    "ml_models.predict": _ml_models_predict,
    "ml_models.train": _ml_models_train,
    "ml_models.wait": _ml_models_wait,
    "images.annotate": _images_annotate,
    "images.annotations": _images_annotations,
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

"""``client.ml_models`` against the local server: training real models in the background,
versions and serving, cancel, predict, and the errors of each."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import aiohttp
import pytest

from labric import AsyncLabric
from labric.errors import (
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from labric.models import (
    MlModel,
    MlModelStatus,
    MlModelTaskType,
    MlProblemType,
    Prediction,
    QualityPreset,
    TableInfo,
)
from labric.server import LocalServer

from .conftest import plant_rows, training

FEATURES = ["height", "colour"]


async def _trained(client: AsyncLabric, table: TableInfo, **kwargs: object) -> MlModel:
    model = await client.ml_models.train(dataset_id=table.id, **kwargs)  # type: ignore[arg-type]
    return await client.ml_models.wait(model.id)


async def test_a_classifier_trains_in_the_background_and_predicts_right(
    client: AsyncLabric, plants: TableInfo
) -> None:
    model = await client.ml_models.train(
        dataset_id=plants.id,
        target_column="healthy",
        name="health",
        description="Is a plant healthy?",
        feature_columns=FEATURES,
    )
    assert isinstance(model, MlModel)
    assert (model.name, model.version_number, model.dataset_id) == ("health", 1, str(plants.id))
    assert model.status in (MlModelStatus.PENDING, MlModelStatus.TRAINING)
    assert model.in_flight
    assert not model.currently_active
    assert model.task_type == MlModelTaskType.TABULAR
    assert model.quality_preset == QualityPreset.MEDIUM_QUALITY
    ready = await client.ml_models.wait(model.id)
    assert ready.status == MlModelStatus.READY
    assert ready.currently_active is True
    assert ready.problem_type == MlProblemType.BINARY  # inferred from a boolean target
    assert ready.training_started_at is not None
    assert ready.training_completed_at is not None
    assert ready.training_started_at <= ready.training_completed_at
    assert ready.error_message is None
    metrics = ready.evaluation_metrics
    assert metrics is not None
    assert metrics["accuracy"] == 1.0
    assert metrics["f1"] == 1.0
    assert metrics["holdout_rows"] == 8
    assert metrics["training_rows"] == 32
    assert await client.ml_models.get(model.id) == ready

    rows = [{"height": 3.0, "colour": "green"}, {"height": 35.0, "colour": "brown"}]
    by_id = await client.ml_models.predict(rows, ml_model_id=model.id)
    assert isinstance(by_id, Prediction)
    assert by_id.predictions == [False, True]
    assert (by_id.model_id, by_id.model_name) == (model.id, "health")
    assert by_id.probabilities is not None
    assert len(by_id.probabilities) == 2
    for probabilities in by_id.probabilities:
        assert set(probabilities) == {"false", "true"}
        assert math.isclose(sum(probabilities.values()), 1.0)
    assert by_id.probabilities[1]["true"] > 0.5 > by_id.probabilities[0]["true"]
    by_name = await client.ml_models.predict(rows, ml_model_name="health")
    assert by_name == by_id
    # Nothing is saved: the table and the model are as they were.
    assert len([r async for r in client.datasets.rows("plants")]) == 40
    assert await client.ml_models.get(model.id) == ready


async def test_a_regressor_predicts_a_linear_target(client: AsyncLabric, plants: TableInfo) -> None:
    model = await _trained(client, plants, target_column="yield_kg", name="yield")
    assert model.status == MlModelStatus.READY
    assert model.problem_type == MlProblemType.REGRESSION
    # Every column that can be a feature, except the target (no ids in this table).
    assert model.feature_columns == ["height", "colour", "healthy", "species"]
    metrics = model.evaluation_metrics
    assert metrics is not None
    assert metrics["r2"] > 0.99
    assert metrics["rmse"] < 1.0
    rows = [{**r, "yield_kg": None} for r in plant_rows()][10:13]
    result = await client.ml_models.predict(rows, ml_model_id=model.id)
    assert result.probabilities is None
    assert result.predictions == pytest.approx([32.0, 35.0, 38.0], abs=1.0)


async def test_a_text_target_is_multiclass(client: AsyncLabric, plants: TableInfo) -> None:
    model = await _trained(
        client, plants, target_column="species", name="species", feature_columns=["height"]
    )
    assert model.problem_type == MlProblemType.MULTICLASS
    assert model.evaluation_metrics is not None
    assert model.evaluation_metrics["accuracy"] >= 0.75
    result = await client.ml_models.predict(
        [{"height": 1.0}, {"height": 38.0}], ml_model_name="species"
    )
    assert result.predictions == ["fern", "palm"]
    assert result.probabilities is not None
    assert set(result.probabilities[0]) == {"fern", "moss", "palm"}


async def test_a_retrain_is_a_new_version_and_pauses_serving_until_ready(
    server: LocalServer, client: AsyncLabric, plants: TableInfo
) -> None:
    first = await _trained(
        client, plants, target_column="healthy", name="health", feature_columns=FEATURES
    )
    runner = training(server)
    hold = runner.hold("fit")
    try:
        again = await client.ml_models.train(
            dataset_id=plants.id,
            target_column="healthy",
            ml_model_id=first.id,
            feature_columns=["height"],
            quality_preset="good_quality",
        )
        await hold.reached()
        assert (again.id, again.name, again.version_number) == (first.id, "health", 2)
        during = await client.ml_models.get(first.id)
        assert during.status == MlModelStatus.TRAINING
        assert during.currently_active is False
        assert during.feature_columns == ["height"]
        with pytest.raises(BadRequestError) as caught:
            await client.ml_models.predict([{"height": 1.0}], ml_model_id=first.id)
        assert "retrain pauses serving" in str(caught.value.detail)
    finally:
        hold.release()
    ready = await client.ml_models.wait(first.id)
    assert (ready.status, ready.version_number, ready.currently_active) == ("ready", 2, True)
    assert ready.quality_preset == QualityPreset.GOOD_QUALITY
    # The new version serves, with its own features.
    result = await client.ml_models.predict([{"height": 30.0}], ml_model_id=first.id)
    assert result.predictions == [True]
    assert [m.id async for m in client.ml_models.list()] == [first.id]


async def test_cancel_stops_training_and_the_ready_version_serves_again(
    server: LocalServer, client: AsyncLabric, plants: TableInfo
) -> None:
    first = await _trained(
        client, plants, target_column="healthy", name="health", feature_columns=FEATURES
    )
    runner = training(server)
    hold = runner.hold("fit")
    try:
        retrain = await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", ml_model_id=first.id
        )
        version_id = await hold.reached()
        cancelled = await client.ml_models.cancel_training(retrain.id)
        assert (cancelled.status, cancelled.version_number) == ("cancelled", 2)
        assert cancelled.error_message == "Training was cancelled"
        # The run really stopped where it was: at the held step, and nothing was stored.
        await runner.wait(version_id)
        assert runner.stopped[version_id].startswith("fit:")
        assert not list(runner.root.glob(f"*/{version_id}*"))
    finally:
        hold.release()
    after = await client.ml_models.get(first.id)
    assert (after.status, after.version_number) == ("cancelled", 2)
    assert after.currently_active is True  # version 1 serves again
    result = await client.ml_models.predict(
        [{"height": 1.0, "colour": "green"}], ml_model_id=first.id
    )
    assert result.predictions == [False]
    with pytest.raises(BadRequestError) as caught:
        await client.ml_models.cancel_training(first.id)
    assert "no training in flight" in str(caught.value.detail)


async def test_cancelling_a_first_version_leaves_nothing_serving(
    server: LocalServer, client: AsyncLabric, plants: TableInfo
) -> None:
    hold = training(server).hold("load")
    try:
        model = await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", name="health"
        )
        await hold.reached()
        await client.ml_models.cancel_training(model.id)
    finally:
        hold.release()
    done = await client.ml_models.wait(model.id)
    assert (done.status, done.currently_active) == ("cancelled", False)
    with pytest.raises(BadRequestError) as caught:
        await client.ml_models.predict([{"height": 1.0}], ml_model_name="health")
    assert "not serving" in str(caught.value.detail)


async def test_wait_gives_up_after_its_timeout(
    server: LocalServer, client: AsyncLabric, plants: TableInfo
) -> None:
    hold = training(server).hold("fit")
    try:
        model = await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", name="health"
        )
        await hold.reached()
        with pytest.raises(WaitTimeoutError) as caught:
            await client.ml_models.wait(model.id, timeout=0.2, poll_interval=0.05)
        assert (caught.value.ml_model_id, caught.value.status) == (model.id, "training")
    finally:
        hold.release()
    assert (await client.ml_models.wait(model.id)).status == "ready"


async def test_a_table_too_small_fails_with_a_message(client: AsyncLabric) -> None:
    table = await client.datasets.create(
        "tiny", columns=[{"name": "x", "type": "float"}, {"name": "y", "type": "integer"}]
    )
    await client.datasets.write("tiny", [{"x": i, "y": i} for i in range(4)])
    model = await _trained(client, table, target_column="y", name="tiny")
    assert (model.status, model.currently_active) == ("failed", False)
    assert model.error_message is not None
    assert "at least 10 rows" in model.error_message


async def test_columns_datasets_and_names_are_checked_up_front(
    client: AsyncLabric, plants: TableInfo
) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.ml_models.train(
            dataset_id=plants.id,
            target_column="vigour",
            name="m",
            feature_columns=["height", "leaves", "roots"],
        )
    assert caught.value.detail == [
        {
            "loc": ["body", "target_column"],
            "msg": f"Not a column of dataset {plants.id} (plants): vigour",
            "type": "missing_column",
        },
        {
            "loc": ["body", "feature_columns"],
            "msg": f"Not a column of dataset {plants.id} (plants): leaves, roots",
            "type": "missing_column",
        },
    ]
    with pytest.raises(NotFoundError):
        await client.ml_models.train(dataset_id=999, target_column="healthy", name="m")
    with pytest.raises(NotFoundError):
        await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", ml_model_id="no-such-model"
        )
    with pytest.raises(ValueError, match="not both"):
        await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", name="m", ml_model_id="x"
        )
    with pytest.raises(UnprocessableEntityError, match="cannot also be a feature"):
        await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", name="m", feature_columns=["healthy"]
        )
    with pytest.raises(UnprocessableEntityError, match="numeric target"):
        await client.ml_models.train(
            dataset_id=plants.id, target_column="species", name="m", problem_type="regression"
        )
    await _trained(client, plants, target_column="healthy", name="m", feature_columns=FEATURES)
    with pytest.raises(UnprocessableEntityError, match="retrain it with its ml_model_id"):
        await client.ml_models.train(dataset_id=plants.id, target_column="healthy", name="m")
    assert [m.name async for m in client.ml_models.list()] == ["m"]


async def test_segmentation_needs_vetted_masks(client: AsyncLabric, plants: TableInfo) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.ml_models.train(
            dataset_id=plants.id, target_column="species", name="seg", task_type="segmentation"
        )
    (problem,) = caught.value.detail
    assert problem["loc"] == ["body", "image_columns"]
    assert "vetted" in problem["msg"]
    assert "image column" in problem["msg"]
    with pytest.raises(UnprocessableEntityError, match="vetted"):
        await client.ml_models.train(
            dataset_id=plants.id,
            target_column="species",
            name="seg",
            problem_type="semantic_segmentation",
        )
    assert [m async for m in client.ml_models.list()] == []


async def test_predict_checks_its_rows(client: AsyncLabric, plants: TableInfo) -> None:
    await _trained(client, plants, target_column="healthy", name="m", feature_columns=FEATURES)
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.ml_models.predict(
            [{"height": 1.0}, {"height": "tall", "colour": None}], ml_model_name="m"
        )
    assert [(p["loc"], p["type"]) for p in caught.value.detail] == [
        (["body", "data", 0, "colour"], "missing"),
        (["body", "data", 1, "height"], "value_error"),
    ]
    # Null is an unknown value, imputed; extra keys are ignored.
    result = await client.ml_models.predict(
        [{"height": None, "colour": None, "note": "x"}], ml_model_name="m"
    )
    assert len(result.predictions) == 1
    with pytest.raises(NotFoundError):
        await client.ml_models.predict([{"height": 1.0}], ml_model_name="nope")
    with pytest.raises(ValueError, match="not both"):
        await client.ml_models.predict([{"height": 1.0}])


async def test_without_scikit_learn_training_answers_503_naming_the_extra(
    client: AsyncLabric, plants: TableInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now fails
    with pytest.raises(InternalServerError) as caught:
        await client.ml_models.train(dataset_id=plants.id, target_column="healthy", name="m")
    assert caught.value.status_code == 503
    assert "labric[ml]" in str(caught.value.detail)
    assert [m async for m in client.ml_models.list()] == []


async def test_a_read_only_key_predicts_but_cannot_train(
    server: LocalServer, client: AsyncLabric, plants: TableInfo
) -> None:
    model = await _trained(
        client, plants, target_column="healthy", name="m", feature_columns=FEATURES
    )
    reader = server.create_key(["read"])
    async with AsyncLabric(reader, base_url=server.base_url, max_retries=0) as c:
        result = await c.ml_models.predict([{"height": 30.0, "colour": "x"}], ml_model_id=model.id)
        assert result.predictions == [True]
        assert await c.ml_models.get(model.id) == model
        assert [m.id async for m in c.ml_models.list()] == [model.id]
        with pytest.raises(PermissionDeniedError):
            await c.ml_models.train(dataset_id=plants.id, target_column="healthy", name="r")
        with pytest.raises(PermissionDeniedError):
            await c.ml_models.cancel_training(model.id)


async def test_models_list_newest_first_in_pages(client: AsyncLabric, plants: TableInfo) -> None:
    made = []
    for name in ("a", "b", "c"):
        made.append(
            await client.ml_models.train(
                dataset_id=plants.id, target_column="healthy", name=name, feature_columns=FEATURES
            )
        )
    assert [m.name async for m in client.ml_models.list(page_size=2)] == ["c", "b", "a"]
    assert [m.name async for m in client.ml_models.list(limit=2)] == ["c", "b"]
    for model in made:
        await client.ml_models.wait(model.id)


def _admin(server: LocalServer) -> AsyncLabric:
    return AsyncLabric(server.admin_key, base_url=server.base_url)


async def test_a_trained_model_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    async with LocalServer(data_dir) as server, _admin(server) as c:
        table = await c.datasets.create(
            "plants",
            columns=[
                {"name": "height", "type": "float"},
                {"name": "healthy", "type": "boolean"},
            ],
        )
        await c.datasets.write(
            "plants", [{"height": r["height"], "healthy": r["healthy"]} for r in plant_rows()]
        )
        model = await _trained(c, table, target_column="healthy", name="m")
        hold = training(server).hold("fit")
        retrain = await c.ml_models.train(
            dataset_id=table.id, target_column="healthy", ml_model_id=model.id
        )
        await hold.reached()
        # The server stops mid-training: the run stops at its checkpoint.
    async with LocalServer(data_dir) as server, _admin(server) as c:
        after = await c.ml_models.get(model.id)
        assert (after.status, after.version_number) == ("failed", 2)
        assert after.error_message is not None
        assert "server stopped" in after.error_message
        assert after.currently_active is True  # version 1, from its file
        result = await c.ml_models.predict([{"height": 33.0}], ml_model_id=retrain.id)
        assert result.predictions == [True]


async def test_a_run_cancelled_while_queued_never_starts(
    server: LocalServer, client: AsyncLabric, plants: TableInfo
) -> None:
    runner = training(server)
    hold = runner.hold("fit")
    try:
        first = await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", name="first"
        )
        await hold.reached()  # the one training thread is busy with it
        queued = await client.ml_models.train(
            dataset_id=plants.id, target_column="healthy", name="queued"
        )
        assert queued.status == MlModelStatus.PENDING
        cancelled = await client.ml_models.cancel_training(queued.id)
        assert cancelled.status == MlModelStatus.CANCELLED
    finally:
        hold.release()
    assert (await client.ml_models.wait(first.id)).status == MlModelStatus.READY
    done = await client.ml_models.wait(queued.id)
    assert done.status == MlModelStatus.CANCELLED
    assert done.training_started_at is None
    assert len(hold.arrivals) == 1  # only the first run ever reached a fitting step


@pytest.mark.parametrize(
    ("extra", "loc", "msg"),
    [
        ({}, "name", "Pass name (a new model) or ml_model_id"),
        ({"name": None}, "name", "Pass name (a new model) or ml_model_id"),
        ({"name": " "}, "name", "String should not be empty"),
        ({"name": "m", "ml_model_id": "x"}, "ml_model_id", "not both"),
        ({"name": "m", "task_type": "vision"}, "task_type", "Input should be 'tabular'"),
    ],
)
async def test_name_xor_model_id_on_the_wire(
    server: LocalServer, plants: TableInfo, extra: dict[str, object], loc: str, msg: str
) -> None:
    body = {"dataset_id": plants.id, "target_column": "healthy", **extra}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/ml-models",
            json=body,
            headers={"Authorization": f"Bearer {server.admin_key}"},
        ) as resp,
    ):
        assert resp.status == 422
        (problem,) = (await resp.json())["detail"]
    assert problem["loc"] == ["body", loc]
    assert msg in problem["msg"]


async def test_a_predict_request_has_a_row_cap(client: AsyncLabric, plants: TableInfo) -> None:
    await _trained(client, plants, target_column="healthy", name="m", feature_columns=FEATURES)
    rows = [{"height": 1.0, "colour": None}] * 10_001
    with pytest.raises(UnprocessableEntityError, match="At most 10000 rows"):
        await client.ml_models.predict(rows, ml_model_name="m")
    result = await client.ml_models.predict(rows[:10_000], ml_model_name="m")
    assert len(result.predictions) == 10_000

"""``Labric().ml_models``: the sync twin, against a real server on its own thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import Labric
from labric.errors import BadRequestError, PermissionDeniedError
from labric.models import MlModel, MlModelStatus, Prediction
from labric.server import LocalServer, ThreadedServer

from .conftest import plant_rows


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path / "server", max_concurrent_executions=0) as srv:
        yield srv


@pytest.fixture
def sync_client(threaded: ThreadedServer) -> Iterator[Labric]:
    with Labric(threaded.admin_key, base_url=threaded.base_url, max_retries=0) as c:
        yield c


def _plants(client: Labric) -> int:
    table = client.datasets.create(
        "plants",
        columns=[
            {"name": "height", "type": "float"},
            {"name": "healthy", "type": "boolean"},
            {"name": "yield_kg", "type": "float"},
        ],
    )
    client.datasets.write(
        "plants", [{k: r[k] for k in ("height", "healthy", "yield_kg")} for r in plant_rows()]
    )
    assert table.id is not None
    return table.id


def test_train_wait_predict_retrain_and_list(sync_client: Labric) -> None:
    table_id = _plants(sync_client)
    model = sync_client.ml_models.train(
        dataset_id=table_id, target_column="healthy", name="health", feature_columns=["height"]
    )
    assert isinstance(model, MlModel)
    ready = sync_client.ml_models.wait(model.id)
    assert (ready.status, ready.currently_active) == (MlModelStatus.READY, True)
    assert ready.evaluation_metrics is not None
    assert ready.evaluation_metrics["accuracy"] == 1.0
    result = sync_client.ml_models.predict(
        [{"height": 2.0}, {"height": 39.0}], ml_model_name="health"
    )
    assert isinstance(result, Prediction)
    assert result.predictions == [False, True]
    with pytest.raises(BadRequestError):
        sync_client.ml_models.cancel_training(model.id)
    again = sync_client.ml_models.train(
        dataset_id=table_id, target_column="healthy", ml_model_id=model.id
    )
    assert again.version_number == 2
    assert sync_client.ml_models.wait(model.id).version_number == 2
    regressor = sync_client.ml_models.train(
        dataset_id=table_id, target_column="yield_kg", name="yield", feature_columns=["height"]
    )
    sync_client.ml_models.wait(regressor.id)
    predicted = sync_client.ml_models.predict([{"height": 20.0}], ml_model_id=regressor.id)
    assert predicted.predictions == pytest.approx([62.0], abs=1.0)
    assert [m.name for m in sync_client.ml_models.list(page_size=1)] == ["yield", "health"]
    assert sync_client.ml_models.get(model.id).version_number == 2


def test_a_read_only_key_predicts_but_cannot_train(
    threaded: ThreadedServer, sync_client: Labric
) -> None:
    table_id = _plants(sync_client)
    model = sync_client.ml_models.train(
        dataset_id=table_id, target_column="healthy", name="health", feature_columns=["height"]
    )
    sync_client.ml_models.wait(model.id)
    with Labric(threaded.create_key(["read"]), base_url=threaded.base_url) as reader:
        assert reader.ml_models.predict([{"height": 30.0}], ml_model_id=model.id).predictions == [
            True
        ]
        with pytest.raises(PermissionDeniedError):
            reader.ml_models.train(dataset_id=table_id, target_column="healthy", name="x")

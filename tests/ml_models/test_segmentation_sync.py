"""``Labric().ml_models`` with a segmentation model: the sync twin, against a real server on
its own thread (train, predict, annotate the prediction unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _masks import decoded_foreground, disc_image_png, disc_pixels, pixels_mask_b64

from labric import Labric
from labric.models import MlModelStatus
from labric.server import LocalServer, ThreadedServer

pytest.importorskip("PIL")

SIZE = 32
#: The least IoU of a predicted mask with the true disc.
MIN_IOU = 0.85


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[ThreadedServer]:
    with LocalServer.run_in_thread(tmp_path / "server", max_concurrent_executions=0) as srv:
        yield srv


@pytest.fixture
def sync_client(threaded: ThreadedServer) -> Iterator[Labric]:
    with Labric(threaded.admin_key, base_url=threaded.base_url, max_retries=0) as c:
        yield c


def test_train_predict_and_annotate(sync_client: Labric) -> None:
    discs = [(10, 10, 6), (20, 18, 8), (12, 22, 5)]
    ids = []
    for i, disc in enumerate(discs):
        up = sync_client.files.upload(disc_image_png(SIZE, SIZE, [disc]), name=f"s{i}.png")
        mask = pixels_mask_b64(SIZE, SIZE, disc_pixels([disc]))
        sync_client.images.annotate(
            str(up.file_id), [{"mask": mask, "label": "disc", "is_human_vetted": True}]
        )
        ids.append(str(up.file_id))
    table = sync_client.datasets.create("plates", columns=[{"name": "image", "type": "text"}])
    sync_client.datasets.write("plates", [{"image": i} for i in ids])
    assert table.id is not None
    started = sync_client.ml_models.train(
        dataset_id=table.id,
        target_column="image",
        name="discs",
        problem_type="semantic_segmentation",
        image_columns=["image"],
    )
    assert started.task_type == "segmentation"
    model = sync_client.ml_models.wait(started.id, timeout=60)
    assert model.status == MlModelStatus.READY, model.error_message

    new = str(
        sync_client.files.upload(disc_image_png(SIZE, SIZE, [(17, 15, 7)]), name="n.png").file_id
    )
    answer = sync_client.ml_models.predict([{"image": new}], ml_model_name="discs")
    assert answer.annotations is not None
    (predicted,) = answer.annotations
    found = decoded_foreground(predicted.mask)
    truth = disc_pixels([(17, 15, 7)])
    assert len(found & truth) / len(found | truth) >= MIN_IOU
    saved = sync_client.images.annotate(new, answer.annotations)
    assert [a.label for a in saved] == ["disc"]

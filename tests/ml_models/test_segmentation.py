"""Segmentation models over real sockets: trained on the vetted masks of an image column,
predicting masks that ``images.annotate`` takes unchanged.

The images are bright discs on a dark, textured background (clearly separable), 32 x 32. A
prediction on an image the model never saw must match the truth with an IoU of at least
:data:`MIN_IOU`.
"""

from __future__ import annotations

from typing import Any

import pytest
from _masks import decoded_foreground, disc_image_png, disc_pixels, pixels_mask_b64

from labric import AsyncLabric
from labric.errors import UnprocessableEntityError
from labric.models import MlModel, MlModelStatus
from labric.server import LocalServer

pytest.importorskip("PIL")

SIZE = 32
#: The least IoU of a predicted mask with the true disc.
MIN_IOU = 0.85
#: Training images: one disc each.
TRAINING_DISCS = [(10, 10, 6), (20, 18, 8), (12, 22, 5), (22, 9, 7), (16, 16, 9)]


def iou(a: set[tuple[int, int]], b: set[tuple[int, int]]) -> float:
    return len(a & b) / len(a | b)


async def upload(server: LocalServer, client: AsyncLabric, discs: list[Any], name: str) -> str:
    data = disc_image_png(SIZE, SIZE, discs)
    up = await client.files.upload(data, name=f"plates/{name}.png")
    return str(up.file_id)


async def annotated_table(
    server: LocalServer, client: AsyncLabric, *, vetted: bool = True, table: str = "plates"
) -> int:
    """A table whose ``image`` column names the training images, each with its disc's mask
    (vetted or not), and an unvetted ``smudge`` mask on the background of the first."""
    await client.datasets.create(table, columns=[{"name": "image", "type": "text"}])
    ids = []
    for i, disc in enumerate(TRAINING_DISCS):
        file_id = await upload(server, client, [disc], f"{table}-{i}")
        entries: list[dict[str, Any]] = [
            {
                "mask": pixels_mask_b64(SIZE, SIZE, disc_pixels([disc])),
                "label": "disc",
                "is_human_vetted": vetted,
            }
        ]
        if i == 0:
            corner = {(x, y) for x in range(SIZE - 6, SIZE) for y in range(SIZE - 6, SIZE)}
            entries.append({"mask": pixels_mask_b64(SIZE, SIZE, corner), "label": "smudge"})
        await client.images.annotate(file_id, entries)
        ids.append(file_id)
    await client.datasets.write(table, [{"image": i} for i in ids])
    info = await client.datasets.get(table)
    assert info.id is not None
    return info.id


async def trained(client: AsyncLabric, table_id: int, name: str = "discs") -> MlModel:
    model = await client.ml_models.train(
        dataset_id=table_id,
        target_column="image",
        name=name,
        task_type="segmentation",
        image_columns=["image"],
    )
    return await client.ml_models.wait(model.id, timeout=60)


async def test_train_predict_and_annotate(server: LocalServer, client: AsyncLabric) -> None:
    table_id = await annotated_table(server, client)
    model = await trained(client, table_id)
    assert model.status == MlModelStatus.READY, model.error_message
    assert model.problem_type == "semantic_segmentation"
    assert model.image_columns == ["image"]
    metrics = model.evaluation_metrics or {}
    # The unvetted smudge never trained: the only label is the vetted one.
    assert metrics["labels"] == ["disc"]
    assert metrics["holdout_images"] == 1
    assert metrics["training_images"] == 4
    assert metrics["iou"]["disc"] >= MIN_IOU
    assert metrics["pixel_accuracy"] >= 0.95

    truth = disc_pixels([(15, 14, 7)])
    new = await upload(server, client, [(15, 14, 7)], "new")
    answer = await client.ml_models.predict([{"image": new}], ml_model_id=model.id)
    assert answer.predictions == [{"disc": 1}]
    assert answer.annotations is not None
    (predicted,) = answer.annotations
    assert (predicted.file_id, predicted.label) == (new, "disc")
    assert (predicted.width, predicted.height) == (SIZE, SIZE)
    found = decoded_foreground(predicted.mask)
    assert iou(found, truth) >= MIN_IOU
    assert predicted.foreground_fraction == pytest.approx(len(found) / SIZE**2)
    assert 0.5 < predicted.confidence <= 1
    # Nothing was saved by predicting; the annotations are accepted as they are.
    assert await client.images.annotations(new) == []
    saved = await client.images.annotate(new, answer.annotations)
    assert [(a.label, a.is_human_vetted) for a in saved] == [("disc", False)]
    assert saved[0].foreground_fraction == pytest.approx(predicted.foreground_fraction)


async def test_region_and_hole_options(server: LocalServer, client: AsyncLabric) -> None:
    model = await trained(client, await annotated_table(server, client))
    ring, dot = (11, 12, 8, 3), (26, 26, 3)
    image = await upload(server, client, [ring, dot], "ring")
    hole = disc_pixels([(11, 12, 2)])  # the ring's hole: 13 pixels of background

    confidences: dict[int, float] = {}

    async def regions(**options: Any) -> list[set[tuple[int, int]]]:
        answer = await client.ml_models.predict([{"image": image}], ml_model_id=model.id, **options)
        assert answer.annotations is not None
        found = [(decoded_foreground(a.mask), a.confidence) for a in answer.annotations]
        confidences.update((len(f), c) for f, c in found)
        return sorted((f for f, _ in found), key=len)

    # Default (max_hole_pixels null): every hole filled; two regions, the dot and the disc.
    small, big = await regions()
    assert iou(small, disc_pixels([dot])) >= 0.6
    assert hole <= big
    assert iou(big, disc_pixels([(11, 12, 8)])) >= MIN_IOU
    # 0 keeps holes: the predicted hole is the true one, give or take its rim.
    _, kept = await regions(max_hole_pixels=0)
    assert not hole & kept
    assert iou(kept, disc_pixels([ring])) >= MIN_IOU
    predicted_hole = big - kept
    assert hole <= predicted_hole
    assert len(predicted_hole) <= 3 * len(hole)
    # A limit below the hole's size keeps it; one at its size fills it.
    _, below = await regions(max_hole_pixels=len(predicted_hole) - 1)
    assert below == kept
    _, at = await regions(max_hole_pixels=len(predicted_hole))
    assert at == big
    # min_region_pixels drops the dot; min_confidence above every region's drops them all.
    (only,) = await regions(min_region_pixels=len(small) + 1)
    assert only == big
    # min_confidence drops the regions whose mean probability is below it.
    low, high = sorted((confidences[len(small)], confidences[len(big)]))
    assert low < high
    assert len(await regions(min_confidence=(low + high) / 2)) == 1
    # pixel_threshold: no probability exceeds 1.
    assert await regions(pixel_threshold=1.0) == []


async def test_unvetted_masks_do_not_train(server: LocalServer, client: AsyncLabric) -> None:
    table_id = await annotated_table(server, client, vetted=False)
    model = await trained(client, table_id, name="unvetted")
    assert model.status == MlModelStatus.FAILED
    assert "human-vetted" in (model.error_message or "")


async def test_requests_a_segmentation_model_refuses(
    server: LocalServer, client: AsyncLabric
) -> None:
    table_id = await annotated_table(server, client)
    with pytest.raises(UnprocessableEntityError, match="image_columns"):
        await client.ml_models.train(
            dataset_id=table_id, target_column="image", name="x", task_type="segmentation"
        )
    model = await trained(client, table_id)
    with pytest.raises(UnprocessableEntityError, match="image"):
        await client.ml_models.predict([{"other": "x"}], ml_model_id=model.id)
    with pytest.raises(UnprocessableEntityError, match="not found"):
        await client.ml_models.predict([{"image": "no-such-file"}], ml_model_id=model.id)


def test_banded_prediction_equals_the_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probabilities computed in bands of rows (as for a large image) equal those of the whole
    image at once: each band's filters see enough neighbouring rows."""
    import io

    import numpy as np

    from labric.server.images import pixels
    from labric.server.ml_models.trainers import segmentation

    class Forest:
        classes_ = np.array([0, 1])

        def predict_proba(self, x: Any) -> Any:
            # The radius-5 blur and the gradient: the features reaching farthest.
            p = np.clip(x[:, 5] * 0.5 + x[:, 7], 0, 1)
            return np.column_stack([1 - p, p])

    model = segmentation.SegmentationModel(image_column="image", labels=("disc",), forest=Forest())
    data = disc_image_png(SIZE, SIZE, [(15, 14, 9), (4, 28, 3)])
    image = pixels.load_rgb(io.BytesIO(data))  # type: ignore[arg-type]
    whole = segmentation._image_proba(model, image)
    monkeypatch.setattr(segmentation, "PREDICT_BLOCK", SIZE * 3)  # bands of 3 rows
    banded = segmentation._image_proba(model, image)
    assert np.array_equal(whole, banded)


async def test_more_regions_than_a_save_takes_are_refused_whole(
    server: LocalServer, client: AsyncLabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labric.server.ml_models.trainers import segmentation

    model = await trained(client, await annotated_table(server, client))
    image = await upload(server, client, [(11, 12, 8, 3), (26, 26, 3)], "two")
    answer = await client.ml_models.predict([{"image": image}], ml_model_id=model.id)
    assert answer.annotations is not None
    assert len(answer.annotations) == 2
    monkeypatch.setattr(segmentation, "MAX_REGIONS", 1)
    with pytest.raises(UnprocessableEntityError, match="min_region_pixels"):
        await client.ml_models.predict([{"image": image}], ml_model_id=model.id)
    # Two images of one region each: the cap counts the whole answer, not one image.
    one = await upload(server, client, [(16, 16, 9)], "one")
    with pytest.raises(UnprocessableEntityError, match="at least 2 regions"):
        await client.ml_models.predict([{"image": one}, {"image": one}], ml_model_id=model.id)


def test_regions_of_a_noisy_image_are_measured_at_once() -> None:
    """A grid of lone pixels has 10,000 regions: they are sized and averaged in one
    pass (each region found matches a region measured on its own), and past the cap the
    answer is refused before any mask is drawn."""
    import numpy as np

    from labric.server.ml_models.trainers import segmentation

    board = np.zeros((200, 200))
    board[::2, ::2] = 0.9
    with pytest.raises(segmentation.TooManyRegions) as caught:
        segmentation._regions(board, {"max_hole_pixels": 0})
    assert caught.value.count == 10_000
    few = np.zeros((40, 40))
    few[2:6, 2:6] = 0.8
    few[20:30, 20:35] = 0.6
    few[35, 35] = 0.99
    found = segmentation._regions(few, {"min_region_pixels": 2, "max_hole_pixels": 0})
    assert [(int(m.sum()), round(c, 6)) for m, c in found] == [(16, 0.8), (150, 0.6)]
    assert found[1][0][20:30, 20:35].all()
    assert int(found[1][0].sum()) == 150
    confident = segmentation._regions(few, {"min_confidence": 0.7, "max_hole_pixels": 0})
    assert [(int(m.sum()), round(c, 6)) for m, c in confident] == [(16, 0.8), (1, 0.99)]

"""Segmentation: a per-pixel model trained on the human-vetted masks of an image column.

Training
    ``image_columns`` names one text column of the table holding image file ids (the
    organisation's confirmed images); ``target_column`` is any column of the table (the target
    is the masks themselves; naming the image column is the convention). Every image of the
    column with at least one human-vetted mask trains; unvetted masks (automated saves) and
    images without a vetted mask are ignored. Each label seen on a vetted mask becomes one
    output of the model: a pixel is that label's when a vetted mask of that label covers it.

    Each pixel is described by its colour and a few local filters computed with numpy
    (:func:`pixel_features`: RGB, grey, box blurs of the grey at two radii, its local contrast,
    its gradient magnitude, and the RGB blurred), and an extremely randomised trees classifier
    (scikit-learn) with one output per label learns them. Training stays small: at most
    :data:`PIXELS_PER_IMAGE` pixels per image, half foreground and half background where there
    is both, and :data:`MAX_TRAINING_PIXELS` in all. The forest grows in rounds, with a
    checkpoint between them.

Holdout
    With two images or more, every fourth image (at least one) is held out whole; with one,
    a disjoint sample of its pixels is. Metrics on the holdout pixels (their natural mix, not
    balanced): ``pixel_accuracy`` (every label right), ``iou`` per label and ``mean_iou``.

Predicting
    Each row names an image file id in the image column. For each label: the pixels whose
    probability exceeds ``pixel_threshold`` (0.5 by default), enclosed holes of at most
    ``max_hole_pixels`` filled (absent or null fills every hole, 0 keeps them), then split into
    8-connected regions; a region of fewer than ``min_region_pixels`` pixels or whose
    confidence (the mean probability of its pixels) is below ``min_confidence`` is dropped.
    Each region left is one annotation in the shape ``images.annotate`` takes: ``file_id``,
    ``label``, ``mask`` (a base64 PNG the image's size, white on transparent), ``width``,
    ``height``, ``foreground_fraction`` and ``confidence``. A row's prediction maps each label
    to its number of regions. Nothing is saved.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from labric.server.core.http import HTTPError
from labric.server.datasets.boundary import open_readonly
from labric.server.datasets.schema import TableDef, quote
from labric.server.images import pixels
from labric.server.ml_models.trainers.base import (
    PredictContext,
    PredictOutcome,
    TrainedModel,
    TrainingContext,
    TrainingFailed,
    TrainSpec,
)

__all__ = ["TRAINER", "SegmentationModel", "SegmentationTrainer", "pixel_features"]

#: Pixels sampled from one training image, and from all of them.
PIXELS_PER_IMAGE = 4000
MAX_TRAINING_PIXELS = 60_000
#: Holdout pixels evaluated per image.
HOLDOUT_PIXELS_PER_IMAGE = 20_000
#: Images read for training at most.
MAX_IMAGES = 500
#: Trees per quality preset, grown :data:`ROUND` at a time.
TREES: Mapping[str, int] = {
    "medium_quality": 30,
    "good_quality": 60,
    "high_quality": 100,
    "best_quality": 150,
}
ROUND = 10
#: Pixels classified at once when predicting (bounds the memory of a large image's features).
PREDICT_BLOCK = 1 << 16
DEFAULT_PIXEL_THRESHOLD = 0.5


@attrs.frozen(kw_only=True)
class SegmentationModel:
    """What is stored: the image column, the labels (one output each) and the forest."""

    image_column: str
    labels: tuple[str, ...]
    forest: Any


def _box(plane: Any, radius: int) -> Any:
    """The mean over a ``(2 radius + 1)``-square window of each pixel (edges repeated), from
    an integral image; works on ``(height, width)`` and ``(height, width, channels)``."""
    import numpy as np

    k = 2 * radius + 1
    pad = [(radius + 1, radius), (radius + 1, radius)] + [(0, 0)] * (plane.ndim - 2)
    c = np.pad(plane.astype(np.float64), pad, mode="edge").cumsum(0).cumsum(1)
    window = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (window / (k * k)).astype(np.float32)


#: Features per pixel (see :func:`pixel_features`).
FEATURES = 11


def pixel_features(image: Any) -> Any:
    """Per-pixel features of an RGB image (Pillow's, or an array): ``(height, width, 11)``
    float32 in 0..1: RGB, grey, the grey box-blurred at radii 2 and 5, the local contrast
    (grey less its radius-5 mean), the grey's gradient magnitude, and RGB blurred at radius 2."""
    import numpy as np

    rgb = np.asarray(image, dtype=np.float32)[..., :3] / 255.0
    grey = rgb @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    blur5 = _box(grey, 5)
    dy, dx = np.gradient(grey) if min(grey.shape) > 1 else (grey * 0, grey * 0)
    planes = [
        rgb,
        grey[..., None],
        _box(grey, 2)[..., None],
        blur5[..., None],
        np.abs(grey - blur5)[..., None],
        np.hypot(dx, dy)[..., None],
        _box(rgb, 2),
    ]
    return np.concatenate(planes, axis=2).astype(np.float32)


def _truth(masks: Sequence[Any], labels: Sequence[str], size: tuple[int, int]) -> Any:
    """``(height, width, labels)`` booleans: each label's vetted masks, united."""
    import numpy as np

    width, height = size
    out = np.zeros((height, width, len(labels)), dtype=bool)
    index = {label: i for i, label in enumerate(labels)}
    for vetted in masks:
        mask = np.asarray(vetted.mask) > 0
        if mask.shape != (height, width):
            continue  # saved masks match their image; a replaced image's no longer do
        out[..., index[vetted.label]] |= mask
    return out


def _sample(truth: Any, n: int, rng: Any, *, balanced: bool) -> Any:
    """Flat pixel indices: ``n`` at most, half on any foreground when ``balanced``."""
    import numpy as np

    flat = truth.reshape(-1, truth.shape[-1]).any(axis=1)
    total = flat.size
    if total <= n:
        return np.arange(total)
    if not balanced:
        return rng.choice(total, size=n, replace=False)
    fg, bg = np.flatnonzero(flat), np.flatnonzero(~flat)
    take_fg = min(len(fg), n // 2)
    take_bg = min(len(bg), n - take_fg)
    take_fg = min(len(fg), n - take_bg)
    return np.concatenate(
        [rng.choice(fg, size=take_fg, replace=False), rng.choice(bg, size=take_bg, replace=False)]
    )


def _proba(model: SegmentationModel, x: Any) -> Any:
    """``(pixels, labels)``: each label's probability, in blocks."""
    import numpy as np

    out = np.zeros((x.shape[0], len(model.labels)), dtype=np.float32)
    for start in range(0, x.shape[0], PREDICT_BLOCK):
        block = x[start : start + PREDICT_BLOCK]
        found = model.forest.predict_proba(block)
        classes_of = model.forest.classes_
        if len(model.labels) == 1:  # one output: sklearn answers unwrapped
            found, classes_of = [found], [classes_of]
        for k, (classes, p) in enumerate(zip(classes_of, found, strict=True)):
            ones = np.flatnonzero(np.asarray(classes) == 1)
            if ones.size:
                out[start : start + len(block), k] = p[:, ones[0]]
    return out


#: Rows around a band whose features need them: the widest filter's radius, and one more.
MARGIN = 6


def _image_proba(model: SegmentationModel, image: Any) -> Any:
    """``(height, width, labels)`` probabilities of a whole image, in bands of rows, so a
    large image never has all its features in memory at once. Each band's features are
    computed with :data:`MARGIN` rows of its neighbours, so they equal the whole image's."""
    import numpy as np

    rgb = np.asarray(image)
    height, width = rgb.shape[:2]
    out = np.empty((height, width, len(model.labels)), dtype=np.float32)
    band = max(1, PREDICT_BLOCK // max(1, width))
    for start in range(0, height, band):
        end = min(height, start + band)
        lo, hi = max(0, start - MARGIN), min(height, end + MARGIN)
        features = pixel_features(rgb[lo:hi])[start - lo : end - lo]
        found = _proba(model, features.reshape(-1, FEATURES))
        out[start:end] = found.reshape(end - start, width, len(model.labels))
    return out


def _metrics(labels: Sequence[str], truth: Any, predicted: Any) -> dict[str, Any]:
    iou: dict[str, float | None] = {}
    for k, label in enumerate(labels):
        union = int((truth[:, k] | predicted[:, k]).sum())
        both = int((truth[:, k] & predicted[:, k]).sum())
        iou[label] = None if union == 0 else round(both / union, 6)
    known = [v for v in iou.values() if v is not None]
    return {
        "pixel_accuracy": round(float((truth == predicted).all(axis=1).mean()), 6),
        "iou": iou,
        "mean_iou": round(sum(known) / len(known), 6) if known else None,
    }


def _png(mask: Any) -> str:
    """A boolean mask as the API takes it: a base64 PNG, white on transparent."""
    import numpy as np

    height, width = mask.shape
    png = pixels.encode_mask((mask.astype(np.uint8) * 255).tobytes(), width, height)
    return base64.b64encode(png).decode("ascii")


#: Regions (annotations) one predict request may answer: what one ``images.annotate`` takes,
#: so a prediction can always be saved as it is.
MAX_REGIONS = 1000


def _regions(
    probability: Any, options: Mapping[str, Any]
) -> list[tuple[Any, float]]:  # (mask, confidence) per region
    import numpy as np
    from scipy import ndimage

    threshold = options.get("pixel_threshold")
    mask = probability > (DEFAULT_PIXEL_THRESHOLD if threshold is None else threshold)
    max_hole = options.get("max_hole_pixels")
    if max_hole is None:
        mask = ndimage.binary_fill_holes(mask)
    elif max_hole > 0:
        holes, n = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
        if n:
            sizes = np.bincount(holes.ravel())
            small = np.flatnonzero(sizes <= max_hole)
            mask = mask | (np.isin(holes, small[small > 0]))
    regions, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    # Sizes and mean probabilities of every region at once: a noisy image may have many
    # thousands of regions, and a pass over the image per region would be quadratic.
    flat = regions.ravel()
    sizes = np.bincount(flat, minlength=n + 1)
    means = np.bincount(flat, weights=probability.ravel(), minlength=n + 1) / np.maximum(sizes, 1)
    keep = np.arange(1, n + 1)
    keep = keep[sizes[1:] >= (options.get("min_region_pixels") or 0)]
    min_confidence = options.get("min_confidence")
    if min_confidence is not None:
        keep = keep[means[keep] >= min_confidence]
    if len(keep) > MAX_REGIONS:
        raise TooManyRegions(len(keep))
    boxes = ndimage.find_objects(regions)
    out = []
    for index in keep:
        box = boxes[index - 1]
        region = np.zeros(mask.shape, dtype=bool)
        region[box] = regions[box] == index
        out.append((region, float(means[index])))
    return out


class TooManyRegions(Exception):
    """More regions survived the options than one request may answer (see :data:`MAX_REGIONS`)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


class SegmentationTrainer:
    """Per-pixel segmentation on an image column's vetted masks (see the module docstring)."""

    task_type = "segmentation"

    def default_features(self, table: TableDef, target: str) -> list[str]:
        """None: a segmentation model reads only the image column."""
        return []

    def check(self, spec: TrainSpec) -> None:
        """One text image column; no feature columns; a segmentation problem type."""
        problems = []
        if len(spec.image_columns) != 1:
            problems.append(
                {
                    "loc": ["body", "image_columns"],
                    "msg": "Segmentation trains on the human-vetted masks of one image column: "
                    "name the column holding the image file ids in image_columns",
                    "type": "value_error",
                }
            )
        else:
            column = spec.table.by_name[spec.image_columns[0]]
            if column.data_type != "text":
                problems.append(
                    {
                        "loc": ["body", "image_columns"],
                        "msg": f"Column {column.name} holds {column.data_type}; an image "
                        "column holds file ids (text)",
                        "type": "value_error",
                    }
                )
        if spec.feature_columns:
            problems.append(
                {
                    "loc": ["body", "feature_columns"],
                    "msg": "A segmentation model reads only its image column; leave "
                    "feature_columns out",
                    "type": "value_error",
                }
            )
        if spec.problem_type not in (None, "semantic_segmentation"):
            problems.append(
                {
                    "loc": ["body", "problem_type"],
                    "msg": f"A segmentation model's problem type is semantic_segmentation, "
                    f"not {spec.problem_type}",
                    "type": "value_error",
                }
            )
        if problems:
            raise HTTPError(422, problems)

    def _file_ids(self, ctx: TrainingContext) -> list[str]:
        spec = ctx.spec
        column = spec.table.by_name[spec.image_columns[0]]
        sql = (
            f"SELECT DISTINCT {quote(column.sql_name)} FROM {quote(spec.table.name)} "
            f"WHERE {quote(column.sql_name)} IS NOT NULL LIMIT {MAX_IMAGES}"
        )
        conn = open_readonly(ctx.dataset_path)
        try:
            return [str(v) for (v,) in conn.execute(sql) if str(v).strip()]
        except sqlite3.Error as exc:
            raise TrainingFailed(f"Reading {spec.table.name} failed: {exc}") from None
        finally:
            conn.close()

    def train(self, ctx: TrainingContext) -> TrainedModel:
        """Sample pixels of the vetted images, fit the forest in rounds, measure the holdout."""
        import numpy as np
        from sklearn.ensemble import ExtraTreesClassifier

        spec = ctx.spec
        column = spec.image_columns[0]
        annotated: list[tuple[str, Any, list[Any]]] = []
        skipped = 0
        for file_id in self._file_ids(ctx):
            ctx.checkpoint("load")
            masks = list(ctx.images.vetted_masks(file_id))
            if not masks:
                continue
            try:
                image = ctx.images.image(file_id)
            except LookupError:
                skipped += 1
                continue
            annotated.append((file_id, image, masks))
        if not annotated:
            raise TrainingFailed(
                f"No image of column {column} in {spec.table.name} has a human-vetted mask: "
                "save masks with is_human_vetted true (unvetted masks never train)"
            )
        labels = tuple(sorted({m.label for _, _, masks in annotated for m in masks}))
        rng = np.random.default_rng(0)
        if len(annotated) >= 2:
            held = {i for i in range(len(annotated)) if i % 4 == 3} or {len(annotated) - 1}
        else:
            held = set()
        per_image = max(200, min(PIXELS_PER_IMAGE, MAX_TRAINING_PIXELS // len(annotated)))
        train_x, train_y, test_x, test_y = [], [], [], []
        for i, (_, image, masks) in enumerate(annotated):
            ctx.checkpoint("prepare")
            features = pixel_features(image).reshape(-1, FEATURES)
            truth = _truth(masks, labels, image.size)
            flat_truth = truth.reshape(-1, len(labels))
            if i in held:
                picked = _sample(truth, HOLDOUT_PIXELS_PER_IMAGE, rng, balanced=False)
                test_x.append(features[picked])
                test_y.append(flat_truth[picked])
                continue
            picked = _sample(truth, per_image, rng, balanced=True)
            if not held:  # one image: hold out a disjoint sample of its other pixels
                rest = np.setdiff1d(np.arange(flat_truth.shape[0]), picked)
                if rest.size:
                    out = rng.choice(rest, size=min(rest.size, per_image), replace=False)
                    test_x.append(features[out])
                    test_y.append(flat_truth[out])
            train_x.append(features[picked])
            train_y.append(flat_truth[picked])
        x = np.concatenate(train_x)
        y = np.concatenate(train_y).astype(np.int8)
        if not y.any():
            raise TrainingFailed("The vetted masks cover no pixel: there is nothing to learn")
        trees = TREES.get(spec.quality_preset, TREES["medium_quality"])
        forest = ExtraTreesClassifier(
            n_estimators=0, max_depth=16, min_samples_leaf=2, random_state=0, warm_start=True
        )
        target = y[:, 0] if len(labels) == 1 else y
        grown = 0
        while grown < trees:
            ctx.checkpoint("fit:extra_trees")
            grown = min(trees, grown + ROUND)
            forest.set_params(n_estimators=grown)
            forest.fit(x, target)
        model = SegmentationModel(image_column=column, labels=labels, forest=forest)
        ctx.checkpoint("evaluate")
        metrics: dict[str, Any] = {
            "labels": list(labels),
            "training_images": len(annotated) - len(held),
            "holdout_images": len(held),
            "training_pixels": int(x.shape[0]),
            "skipped_images": skipped,
        }
        if test_x:
            tx, ty = np.concatenate(test_x), np.concatenate(test_y)
            predicted = _proba(model, tx) > DEFAULT_PIXEL_THRESHOLD
            metrics |= _metrics(labels, ty, predicted)
            metrics["holdout_pixels"] = int(tx.shape[0])
        return TrainedModel(model=model, problem_type="semantic_segmentation", metrics=metrics)

    def check_rows(self, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Every row names an image file id in the image column."""
        assert isinstance(model, SegmentationModel)
        problems = []
        for i, row in enumerate(rows):
            value = row.get(model.image_column)
            if not isinstance(value, str) or not value.strip():
                problems.append(
                    {
                        "loc": ["body", "data", i, model.image_column],
                        "msg": f"Name the image's file id in {model.image_column}",
                        "type": "missing" if value is None else "string_type",
                    }
                )
        if problems:
            raise HTTPError(422, problems[:100])

    def predict(
        self, model: Any, rows: Sequence[Mapping[str, Any]], ctx: PredictContext
    ) -> PredictOutcome:
        """Each row's image: the regions of each label, as annotations (nothing saved)."""
        assert isinstance(model, SegmentationModel)
        images = []
        problems = []
        for i, row in enumerate(rows):
            try:
                images.append(ctx.images.image(row[model.image_column]))
            except LookupError as exc:
                problems.append({"loc": ["body", "data", i, model.image_column], "msg": str(exc)})
        if problems:
            raise HTTPError(422, [{**p, "type": "value_error"} for p in problems])
        predictions: list[Any] = []
        annotations: list[dict[str, Any]] = []
        for row, image in zip(rows, images, strict=True):
            width, height = image.size
            probability = _image_proba(model, image)
            counts: dict[str, int] = {}
            for k, label in enumerate(model.labels):
                try:
                    found = _regions(probability[..., k], ctx.options)
                except TooManyRegions as exc:
                    found_so_far = len(annotations) + exc.count
                    raise self._too_many(found_so_far) from None
                if len(annotations) + len(found) > MAX_REGIONS:
                    raise self._too_many(len(annotations) + len(found))
                counts[label] = len(found)
                for region, confidence in found:
                    annotations.append(
                        {
                            "file_id": row[model.image_column],
                            "label": label,
                            "mask": _png(region),
                            "width": width,
                            "height": height,
                            "foreground_fraction": float(region.sum()) / (width * height),
                            "confidence": round(confidence, 6),
                        }
                    )
            predictions.append(counts)
        return PredictOutcome(predictions=predictions, annotations=annotations)

    @staticmethod
    def _too_many(count: int) -> HTTPError:
        return HTTPError(
            422,
            f"The prediction has at least {count} regions, more than the {MAX_REGIONS} "
            "annotations one request may answer (and one images.annotate takes); raise "
            "min_region_pixels or min_confidence, or predict fewer images at a time",
        )


TRAINER = SegmentationTrainer()

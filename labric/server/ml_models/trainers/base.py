"""What every trainer shares: the request, the training context, results and errors."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs

from labric.server.core.http import HTTPError
from labric.server.datasets.schema import TableDef

__all__ = [
    "ML_EXTRA",
    "Cancelled",
    "ImageSource",
    "PredictContext",
    "PredictOutcome",
    "TrainSpec",
    "TrainedModel",
    "Trainer",
    "TrainingContext",
    "TrainingFailed",
    "require_sklearn",
]

#: What to install for training: named by the 503 answered without it.
ML_EXTRA = "labric[ml]"


class Cancelled(Exception):
    """The run was cancelled (or the server is stopping): the trainer stops at a checkpoint."""


class TrainingFailed(Exception):
    """The data cannot train this model; the message becomes the version's ``error_message``."""


def require_sklearn() -> None:
    """Check that scikit-learn can be imported.

    Raises:
        HTTPError: 503 naming the extra to install.
    """
    try:
        importlib.import_module("sklearn")
    except ImportError:
        raise HTTPError(
            503,
            f"Training and predicting need scikit-learn, which this server lacks: install "
            f"{ML_EXTRA} (pip install '{ML_EXTRA}') and restart it",
        ) from None


@attrs.frozen(kw_only=True)
class TrainSpec:
    """A checked training request.

    Attributes:
        table: The dataset table trained on.
        target_column: The column to predict.
        feature_columns: The columns predictions are made from.
        image_columns: Image columns (segmentation and multimodal tasks).
        problem_type: As requested; ``None`` to infer it from the target.
        quality_preset: How hard to try (more and larger candidate models).
    """

    table: TableDef
    target_column: str
    feature_columns: tuple[str, ...]
    image_columns: tuple[str, ...]
    problem_type: str | None
    quality_preset: str


class ImageSource(Protocol):
    """The organisation's images and their vetted masks, read from a training or prediction
    thread (never from the event loop: each call waits for the server's loop).

    Both raise :class:`LookupError` with a message fit for the caller for a file the
    organisation does not have, one not confirmed, or one that is not an image.
    """

    def image(self, file_id: str) -> Any:
        """The image as a Pillow RGB image."""

    def vetted_masks(self, file_id: str) -> Sequence[Any]:
        """The file's human-vetted masks (:class:`labric.server.images.store.VettedMask`)."""


@attrs.frozen(kw_only=True)
class PredictContext:
    """What a prediction gets besides the rows.

    Attributes:
        options: The request's task-specific parameters that were sent (for segmentation
            ``pixel_threshold``, ``min_region_pixels``, ``max_hole_pixels``, ``min_confidence``).
        images: The organisation's images.
    """

    options: Mapping[str, Any]
    images: ImageSource


@attrs.frozen(kw_only=True)
class TrainingContext:
    """What a training run gets on the training thread.

    Attributes:
        spec: The request.
        dataset_path: The organisation's dataset file (open it read-only).
        checkpoint: Call between fitting steps with the step's name; raises :class:`Cancelled`
            once the run is cancelled (a test hook may also hold the run there).
        images: The organisation's images and their vetted masks.
    """

    spec: TrainSpec
    dataset_path: Path
    checkpoint: Callable[[str], None]
    images: ImageSource


@attrs.frozen(kw_only=True)
class TrainedModel:
    """A finished run: the model to store (picklable), its problem type and metrics."""

    model: Any
    problem_type: str
    metrics: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class PredictOutcome:
    """One prediction per row, per-class probabilities for a classifier, and a segmentation
    model's predicted annotations."""

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    annotations: list[dict[str, Any]] | None = None


class Trainer(Protocol):
    """What a task type's module provides."""

    task_type: str

    def default_features(self, table: TableDef, target: str) -> list[str]:
        """The feature columns of a request that names none."""

    def check(self, spec: TrainSpec) -> None:
        """Refuse, with a 422, a request this trainer cannot train (column types, problem
        type); called before anything is stored."""

    def train(self, ctx: TrainingContext) -> TrainedModel:
        """Train (on the training thread).

        Raises:
            Cancelled: from a checkpoint.
            TrainingFailed: the data cannot train this model.
        """

    def predict(
        self, model: Any, rows: Sequence[Mapping[str, Any]], ctx: PredictContext
    ) -> PredictOutcome:
        """Predict for rows already checked by :meth:`check_rows` (on a prediction thread)."""

    def check_rows(self, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Refuse, with a 422 naming each problem, rows the model cannot predict for."""

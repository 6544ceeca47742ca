"""Models of the ML models resource: the hosted ``ToolsMlModelDetailSchema`` and
``PredictResponseSchema``, and their enums (open: values a newer server sends are kept)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = [
    "MlModel",
    "MlModelStatus",
    "MlModelTaskType",
    "MlProblemType",
    "PredictedAnnotation",
    "Prediction",
    "QualityPreset",
]


class MlModelTaskType(OpenEnum):
    """What a model learns from: table columns, columns and images, or image masks."""

    TABULAR = "tabular"
    MULTIMODAL = "multimodal"
    SEGMENTATION = "segmentation"


class MlProblemType(OpenEnum):
    """What a model predicts (inferred from the target column when not given)."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"
    SEMANTIC_SEGMENTATION = "semantic_segmentation"


class QualityPreset(OpenEnum):
    """How hard training tries: more and larger candidate models, slower."""

    BEST_QUALITY = "best_quality"
    HIGH_QUALITY = "high_quality"
    GOOD_QUALITY = "good_quality"
    MEDIUM_QUALITY = "medium_quality"


class MlModelStatus(OpenEnum):
    """Where a model's newest version is: queued, training, or ended."""

    PENDING = "pending"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


_IN_FLIGHT = frozenset({MlModelStatus.PENDING.value, MlModelStatus.TRAINING.value})


@attrs.frozen(kw_only=True)
class MlModel:
    """A model, with the training status and results of its newest version.

    Attributes:
        id: The model's id; a retrain keeps it (and the name) and adds a version.
        currently_active: Whether the model serves predictions: a version is ready and no newer
            one is pending or training (a retrain pauses serving until it is ready).
        status: The newest version's: ``pending``, ``training``, ``ready``, ``failed`` or
            ``cancelled``.
        version_number: The newest version's number (1 for a first training).
        dataset_id: The table trained on.
        evaluation_metrics: Scores on the held-out rows (accuracy and F1 for a classifier, R²
            and RMSE for a regressor), once ready.
        error_message: Why training failed or stopped.
    """

    __repr__ = bounded_repr

    id: str
    name: str
    task_type: MlModelTaskType | str
    description: str | None = None
    target_column: str | None = None
    feature_columns: list[str] | None = None
    image_columns: list[str] | None = None
    problem_type: MlProblemType | str | None = None
    currently_active: bool | None = None
    status: MlModelStatus | str | None = None
    version_number: int | None = None
    dataset_id: str | None = None
    quality_preset: QualityPreset | str | None = None
    error_message: str | None = None
    training_started_at: datetime | None = None
    training_completed_at: datetime | None = None
    evaluation_metrics: dict[str, Any] | None = None

    @property
    def in_flight(self) -> bool:
        """Whether the newest version is still pending or training."""
        return self.status is not None and str(self.status) in _IN_FLIGHT


@attrs.frozen(kw_only=True)
class PredictedAnnotation:
    """A segmentation model's predicted mask for one image (not saved; ``images.annotate``
    takes it as is).

    Attributes:
        mask: A base64 PNG, white on transparent.
        confidence: The mean probability of the mask's pixels.
    """

    __repr__ = bounded_repr

    file_id: str
    label: str
    mask: str = attrs.field(repr=False)
    width: int
    height: int
    foreground_fraction: float
    confidence: float


@attrs.frozen(kw_only=True)
class Prediction:
    """The answer to ``predict``: one prediction per input row, in order.

    Attributes:
        predictions: The predicted value of each row (a class or a number).
        probabilities: For a classifier, each row's probability per class (class as a string).
        annotations: For a segmentation model, the predicted masks.
    """

    __repr__ = bounded_repr

    predictions: list[Any]
    model_id: str
    model_name: str
    probabilities: list[dict[str, Any]] | None = None
    annotations: list[PredictedAnnotation] | None = None

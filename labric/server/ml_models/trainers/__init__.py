"""Trainers, one module per task type, found through :data:`TRAINERS`.

A trainer knows one ``task_type``: which requests it can train (:meth:`Trainer.check`, on the
event loop, cheap), how to train (:meth:`Trainer.train`, on the training thread) and how to
predict with what it trained (:meth:`Trainer.predict`, on a prediction thread). The routes and
the runner know nothing of any task: each task (tabular, segmentation) is a module registered
in :data:`TRAINERS`. Task types without a trainer answer 422 with the reason in :data:`UNAVAILABLE`.

scikit-learn is an optional dependency (the ``ml`` extra): trainer modules import it inside
their functions, never at import time, so the server runs without it and answers training and
prediction with 503 naming the extra (:func:`require_sklearn`).

Cancellation is cooperative: a trainer calls :meth:`TrainingContext.checkpoint` between fitting
steps (and between rounds of a step that grows, such as a forest), which raises
:class:`Cancelled` once the run was cancelled or the server is stopping. A step in progress runs
to its end, so a cancel takes effect within one step.
"""

from __future__ import annotations

from collections.abc import Mapping

from labric.server.ml_models.trainers import segmentation, tabular
from labric.server.ml_models.trainers.base import (
    ML_EXTRA,
    Cancelled,
    ImageSource,
    PredictContext,
    PredictOutcome,
    TrainedModel,
    Trainer,
    TrainingContext,
    TrainingFailed,
    TrainSpec,
    require_sklearn,
)

__all__ = [
    "ML_EXTRA",
    "TRAINERS",
    "UNAVAILABLE",
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

#: Task type -> its trainer.
TRAINERS: Mapping[str, Trainer] = {t.task_type: t for t in (tabular.TRAINER, segmentation.TRAINER)}

#: Task types with no trainer here yet -> why, as the 422 says it.
UNAVAILABLE: Mapping[str, tuple[str, str]] = {
    "multimodal": (
        "task_type",
        "Multimodal training (tabular columns with images) is not available on the local "
        "server; train a tabular model on the table's columns",
    ),
}

"""The ML models family's wire shapes: a model's detail, a prediction, the train and predict
requests.

Component schemas are named after the SDK's models where they answer one (``tests/openapi``
compares their fields); each operation is declared with its handler. The enums are the hosted
ones; answers declare them as plain strings, since the SDK keeps values it does not know.
"""

from __future__ import annotations

from labric.server.core.declare import (
    ANY,
    BOOLEAN,
    DATETIME,
    INTEGER,
    NUMBER,
    OBJECT,
    STRING,
    Family,
    array,
    integer,
    nullable,
    record,
    ref,
    request,
    string,
)

#: The hosted ``MlModelTaskType``.
TASK_TYPES = ["tabular", "multimodal", "segmentation"]
#: The hosted ``MlProblemType``.
PROBLEM_TYPES = ["binary", "multiclass", "regression", "semantic_segmentation"]
#: The hosted ``QualityPreset``, fastest last.
QUALITY_PRESETS = ["best_quality", "high_quality", "good_quality", "medium_quality"]
#: A version's training status, in the order it moves through them.
STATUSES = ["pending", "training", "ready", "failed", "cancelled"]
#: Statuses of a version still in flight (``cancel-training`` ends them).
IN_FLIGHT = ("pending", "training")

MAX_NAME = 255
MAX_DESCRIPTION = 10_000
MAX_COLUMNS = 1000
#: The most rows one predict request may carry.
MAX_PREDICT_ROWS = 10_000
#: The largest predict request body (the hosted edge's 4.5 MB).
MAX_PREDICT_BODY = 4_500_000

SCHEMAS = {
    "MlModel": record(
        {
            "id": STRING,
            "name": STRING,
            "description": nullable(STRING),
            "task_type": string(description="One of " + ", ".join(TASK_TYPES)),
            "target_column": nullable(STRING),
            "feature_columns": nullable(array(STRING)),
            "image_columns": nullable(array(STRING)),
            "problem_type": nullable(
                string(description="One of " + ", ".join(PROBLEM_TYPES) + " (inferred if unset)")
            ),
            "currently_active": nullable(BOOLEAN),
            "status": nullable(string(description="The newest version's: " + ", ".join(STATUSES))),
            "version_number": nullable(INTEGER),
            "dataset_id": nullable(STRING),
            "quality_preset": nullable(STRING),
            "error_message": nullable(STRING),
            "training_started_at": nullable(DATETIME),
            "training_completed_at": nullable(DATETIME),
            "evaluation_metrics": nullable(OBJECT),
        },
        description="A model and its newest version (hosted ToolsMlModelDetailSchema). "
        "currently_active: the model serves predictions (a version is ready and no newer one "
        "is pending or training)",
    ),
    "PredictedAnnotation": record(
        {
            "file_id": STRING,
            "label": STRING,
            "mask": STRING,
            "width": INTEGER,
            "height": INTEGER,
            "foreground_fraction": NUMBER,
            "confidence": NUMBER,
        },
        description="A segmentation model's predicted mask (hosted PredictedAnnotationSchema)",
    ),
    "Prediction": record(
        {
            "predictions": array(ANY),
            "probabilities": nullable(array(OBJECT)),
            "model_id": STRING,
            "model_name": STRING,
            "annotations": nullable(array(ref("PredictedAnnotation"))),
        },
        description="One prediction per input row, and per-class probabilities for a "
        "classifier (hosted PredictResponseSchema); nothing is saved",
    ),
    "TrainMlModelRequest": request(
        {
            "dataset_id": {"type": ["string", "integer"], "description": "The table's id"},
            "target_column": string(minLength=1, maxLength=MAX_NAME),
            "name": string(minLength=1, maxLength=MAX_NAME, description="A new model's name"),
            "ml_model_id": string(
                maxLength=128, description="Retrain this model as a new version (not with name)"
            ),
            "description": string(maxLength=MAX_DESCRIPTION),
            "task_type": string(enum=TASK_TYPES),
            "quality_preset": string(enum=QUALITY_PRESETS),
            "feature_columns": array(STRING, maxItems=MAX_COLUMNS),
            "image_columns": array(STRING, maxItems=MAX_COLUMNS),
            "problem_type": string(enum=PROBLEM_TYPES),
        },
        required=["dataset_id", "target_column"],
    ),
    "PredictRequest": request(
        {
            "data": array(OBJECT, minItems=1, maxItems=MAX_PREDICT_ROWS),
            "ml_model_id": STRING,
            "ml_model_name": STRING,
            "pixel_threshold": {**NUMBER, "minimum": 0, "maximum": 1},
            "min_region_pixels": integer(minimum=0),
            "max_hole_pixels": integer(
                minimum=0, description="Fill enclosed holes up to this size (0: none)"
            ),
            "min_confidence": {**NUMBER, "minimum": 0, "maximum": 1},
        },
        required=["data"],
    ),
}

ML_MODELS = Family(
    tag="ml-models",
    description="ML models: training on a dataset table in the background, versions on "
    "retrain, predictions (nothing saved)",
    schemas=SCHEMAS,
)

__all__ = [
    "IN_FLIGHT",
    "MAX_PREDICT_BODY",
    "MAX_PREDICT_ROWS",
    "ML_MODELS",
    "PROBLEM_TYPES",
    "QUALITY_PRESETS",
    "STATUSES",
    "TASK_TYPES",
]

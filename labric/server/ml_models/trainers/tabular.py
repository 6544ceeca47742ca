"""Tabular models: classification and regression on a table's columns, with scikit-learn.

Training (one run, on the training thread)::

    load        read the target and feature columns (rows without a target are left out)
    prepare     infer the problem type (unless given); split a stratified 20% holdout
    fit:<name>  fit each candidate of the quality preset on the training part; forests and
                boosting grow in rounds, with a checkpoint between rounds
    evaluate    score the candidates on the holdout; keep the best (ties go to the simpler)
    save        (the runner writes the model to disk)

Problem types follow the hosted ``MlProblemType``: a boolean or two-valued target is ``binary``,
a text target or an integer one with few distinct values ``multiclass``, any other number
``regression``. ``evaluation_metrics`` are the chosen model's scores on the holdout: accuracy
and F1 (of the positive class, the last in sort order, for binary; macro for multiclass) for a
classifier, R² and RMSE for a regressor, with the row counts and the model's name.

Features: integer, float, boolean and datetime columns (as seconds since the epoch) are numbers,
imputed with the median and scaled; text columns are categories, one-hot encoded (unseen ones
at prediction are all zeros). A null is missing, never an error. JSON columns cannot be
features. The preprocessing is part of the stored model, so predictions get the same treatment.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from labric.server.core.http import HTTPError
from labric.server.datasets.boundary import open_readonly
from labric.server.datasets.schema import ColumnDef, TableDef, decode_value, quote
from labric.server.ml_models.trainers.base import (
    PredictContext,
    PredictOutcome,
    TrainedModel,
    TrainingContext,
    TrainingFailed,
    TrainSpec,
)

__all__ = ["TRAINER", "TabularModel", "TabularTrainer", "default_features", "infer_problem_type"]

#: Rows with a target value a model needs at least.
MIN_ROWS = 10
#: The share of rows held out for evaluation.
HOLDOUT = 0.2
#: Distinct integer target values up to which (and at most a tenth of the rows) it is a class.
MAX_INTEGER_CLASSES = 20
#: Trees (or boosting iterations) added per round between checkpoints.
ROUND = 25
#: Quality preset -> (forest trees, boosting iterations, extra trees; 0 leaves one out).
PRESETS: Mapping[str, tuple[int, int, int]] = {
    "medium_quality": (50, 0, 0),
    "good_quality": (100, 100, 0),
    "high_quality": (200, 200, 200),
    "best_quality": (300, 300, 300),
}
DEFAULT_PRESET = "medium_quality"

NUMERIC_TYPES = ("integer", "float", "boolean", "datetime")
CATEGORY_TYPES = ("text",)


@attrs.frozen(kw_only=True)
class TabularModel:
    """What is stored: the fitted pipeline and what predictions need to know.

    Attributes:
        pipeline: Preprocessing and estimator, fitted.
        features: ``(column, data_type)`` in the order the pipeline takes them.
        problem_type: ``binary``, ``multiclass`` or ``regression``.
        estimator: The chosen candidate's name.
    """

    pipeline: Any
    features: tuple[tuple[str, str], ...]
    problem_type: str
    estimator: str


# -- values ------------------------------------------------------------------------------------


def _number(data_type: str, value: Any) -> float | None:
    """A feature value as a number (``None``: missing); raises ValueError if it is not one."""
    if value is None:
        return None
    if data_type == "datetime":
        if not isinstance(value, str):
            raise ValueError("expected an ISO 8601 datetime string")
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if data_type == "boolean":
        if isinstance(value, bool):
            return float(value)
        raise ValueError("expected true or false")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _category(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError("expected a string")


def _matrix(rows: Sequence[Mapping[str, Any]], features: Sequence[tuple[str, str]]) -> Any:
    """The rows as the pipeline's input: a 2-D object array, numbers as floats (NaN missing),
    categories as strings (missing as their own category)."""
    import numpy as np

    out = np.empty((len(rows), len(features)), dtype=object)
    for j, (name, data_type) in enumerate(features):
        numeric = data_type in NUMERIC_TYPES
        for i, row in enumerate(rows):
            value = row.get(name)
            if numeric:
                number = _number(data_type, value)
                out[i, j] = math.nan if number is None else number
            else:
                text = _category(value)
                out[i, j] = "\x00missing" if text is None else text
    return out


def _as_float(x: Any) -> Any:
    """The numeric columns as floats (a picklable step of the pipeline)."""
    import numpy as np

    return np.asarray(x, dtype=float)


def _json_value(value: Any) -> Any:
    """A numpy scalar as the plain Python value JSON takes."""
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _label(value: Any) -> str:
    """A class as a key of the probabilities object."""
    value = _json_value(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- the trainer -------------------------------------------------------------------------------


def _feature_kind(column: ColumnDef) -> str | None:
    if column.data_type in NUMERIC_TYPES:
        return "number"
    if column.data_type in CATEGORY_TYPES:
        return "category"
    return None


def default_features(table: TableDef, target: str) -> list[str]:
    """The features when none are named: every column but the target, the primary key,
    foreign keys (ids), a raw table's ``order`` and JSON columns."""
    return [
        c.name
        for c in table.columns
        if c.name != target
        and not c.primary_key
        and c.foreign_key is None
        and not (table.is_raw and c.name == "order")
        and _feature_kind(c) is not None
    ]


def _load(ctx: TrainingContext) -> tuple[list[dict[str, Any]], list[Any]]:
    """Feature rows and target values of the rows whose target is set."""
    spec = ctx.spec
    table = spec.table
    columns = [table.by_name[n] for n in (*spec.feature_columns, spec.target_column)]
    sql = (
        f"SELECT {', '.join(quote(c.sql_name) for c in columns)} FROM {quote(table.name)} "
        f"WHERE {quote(columns[-1].sql_name)} IS NOT NULL"
    )
    conn = open_readonly(ctx.dataset_path)
    try:
        rows: list[dict[str, Any]] = []
        targets: list[Any] = []
        for n, raw in enumerate(conn.execute(sql)):
            if n % 10_000 == 0:
                ctx.checkpoint("load")
            values = [decode_value(c.data_type, v) for c, v in zip(columns, raw, strict=True)]
            rows.append(dict(zip(spec.feature_columns, values[:-1], strict=True)))
            targets.append(values[-1])
    except sqlite3.Error as exc:
        raise TrainingFailed(f"Reading {table.name} failed: {exc}") from None
    finally:
        conn.close()
    return rows, targets


def infer_problem_type(data_type: str, targets: Sequence[Any]) -> str:
    """The hosted problem type a target column suggests (see the module docstring)."""
    distinct = len(set(targets))
    if data_type == "boolean" or distinct <= 2:
        return "binary"
    if data_type == "text":
        return "multiclass"
    if data_type == "integer" and distinct <= MAX_INTEGER_CLASSES and distinct * 10 <= len(targets):
        return "multiclass"
    return "regression"


def _target_array(data_type: str, problem_type: str, targets: Sequence[Any]) -> Any:
    import numpy as np

    if problem_type == "regression":
        return np.asarray(targets, dtype=float)
    if data_type == "boolean":
        return np.asarray(targets, dtype=bool)
    if data_type == "integer":
        return np.asarray(targets, dtype=np.int64)
    return np.asarray([str(t) for t in targets], dtype=object)


def _candidates(problem_type: str, preset: str) -> list[tuple[str, Callable[[], Any], int]]:
    """``(name, make, total)``: each estimator of the preset, and the trees or iterations it
    grows to in rounds (0: fitted in one step)."""
    from sklearn import ensemble, linear_model

    forest, boosting, extra = PRESETS[preset]
    classify = problem_type != "regression"
    found: list[tuple[str, Callable[[], Any], int]] = []
    if classify:
        found.append(
            ("logistic_regression", lambda: linear_model.LogisticRegression(max_iter=2000), 0)
        )
        found.append(
            (
                "random_forest",
                lambda: ensemble.RandomForestClassifier(warm_start=True, random_state=0),
                forest,
            )
        )
    else:
        found.append(("ridge", lambda: linear_model.Ridge(alpha=1e-3), 0))
        found.append(
            (
                "random_forest",
                lambda: ensemble.RandomForestRegressor(warm_start=True, random_state=0),
                forest,
            )
        )
    if boosting:
        cls = (
            ensemble.HistGradientBoostingClassifier
            if classify
            else ensemble.HistGradientBoostingRegressor
        )
        found.append(("gradient_boosting", lambda: cls(warm_start=True, random_state=0), boosting))
    if extra:
        cls2 = ensemble.ExtraTreesClassifier if classify else ensemble.ExtraTreesRegressor
        found.append(("extra_trees", lambda: cls2(warm_start=True, random_state=0), extra))
    return found


def _fit(
    name: str, make: Callable[[], Any], total: int, x: Any, y: Any, ctx: TrainingContext
) -> Any:
    estimator = make()
    if total == 0:
        ctx.checkpoint(f"fit:{name}")
        return estimator.fit(x, y)
    param = "max_iter" if name == "gradient_boosting" else "n_estimators"
    grown = 0
    while grown < total:
        ctx.checkpoint(f"fit:{name}")
        grown = min(total, grown + ROUND)
        estimator.set_params(**{param: grown})
        estimator.fit(x, y)
    return estimator


def _preprocessor(features: Sequence[tuple[str, str]]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    numeric = [j for j, (_, t) in enumerate(features) if t in NUMERIC_TYPES]
    categories = [j for j, (_, t) in enumerate(features) if t in CATEGORY_TYPES]
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        steps = Pipeline(
            [
                ("float", FunctionTransformer(_as_float)),
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        parts.append(("numbers", steps, numeric))
    if categories:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, max_categories=50)
        parts.append(("categories", encoder, categories))
    return ColumnTransformer(parts, sparse_threshold=0)


def _split(n: int, y: Any, classify: bool) -> tuple[Any, Any]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    holdout = max(2, round(n * HOLDOUT))
    indices = np.arange(n)
    stratify = None
    if classify:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and holdout >= len(counts) and n - holdout >= len(counts):
            stratify = y
    train, test = train_test_split(
        indices, test_size=holdout, random_state=0, shuffle=True, stratify=stratify
    )
    return train, test


def _metrics(problem_type: str, y_true: Any, y_pred: Any, classes: Any) -> dict[str, Any]:
    from sklearn import metrics

    if problem_type == "regression":
        rmse = math.sqrt(float(metrics.mean_squared_error(y_true, y_pred)))
        spread = float(((y_true - y_true.mean()) ** 2).sum())
        r2 = float(metrics.r2_score(y_true, y_pred)) if spread > 0 else None
        return {"r2": r2, "rmse": rmse}
    if problem_type == "binary" and len(classes) == 2:
        f1 = metrics.f1_score(
            y_true, y_pred, average="binary", pos_label=classes[-1], zero_division=0
        )
        average = "binary"
    else:
        f1 = metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)
        average = "macro"
    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "f1": float(f1),
        "f1_average": average,
        "positive_class": _json_value(classes[-1]) if average == "binary" else None,
    }


def _score(problem_type: str, found: Mapping[str, Any]) -> float:
    value = found["r2"] if problem_type == "regression" else found["accuracy"]
    return -math.inf if value is None else float(value)


class TabularTrainer:
    """Classification and regression on a table's columns (see the module docstring)."""

    task_type = "tabular"

    def default_features(self, table: TableDef, target: str) -> list[str]:
        """Every column that can be a feature except the target and ids."""
        return default_features(table, target)

    def check(self, spec: TrainSpec) -> None:
        """Refuse image columns, JSON features, a non-tabular problem type and a target that
        cannot be one."""
        problems = []
        if spec.image_columns:
            problems.append(
                {
                    "loc": ["body", "image_columns"],
                    "msg": "A tabular model takes no image columns (a segmentation model does)",
                    "type": "value_error",
                }
            )
        for name in spec.feature_columns:
            column = spec.table.by_name[name]
            if _feature_kind(column) is None:
                problems.append(
                    {
                        "loc": ["body", "feature_columns"],
                        "msg": f"Column {name} holds {column.data_type}, which cannot be a "
                        "feature (numbers, booleans, datetimes and text can)",
                        "type": "value_error",
                    }
                )
        target = spec.table.by_name[spec.target_column]
        if target.data_type in ("json", "datetime"):
            problems.append(
                {
                    "loc": ["body", "target_column"],
                    "msg": f"Column {target.name} holds {target.data_type}, which cannot be "
                    "predicted (numbers, booleans and text can)",
                    "type": "value_error",
                }
            )
        if spec.problem_type == "semantic_segmentation":
            problems.append(
                {
                    "loc": ["body", "problem_type"],
                    "msg": "semantic_segmentation needs task_type segmentation",
                    "type": "value_error",
                }
            )
        elif spec.problem_type == "regression" and target.data_type not in ("integer", "float"):
            problems.append(
                {
                    "loc": ["body", "problem_type"],
                    "msg": f"Regression needs a numeric target; {target.name} holds "
                    f"{target.data_type}",
                    "type": "value_error",
                }
            )
        if not spec.feature_columns:
            problems.append(
                {
                    "loc": ["body", "feature_columns"],
                    "msg": "No feature columns: name some in feature_columns (the table has no "
                    "column that can be one besides the target and ids)",
                    "type": "value_error",
                }
            )
        if problems:
            raise HTTPError(422, problems)

    def train(self, ctx: TrainingContext) -> TrainedModel:
        """Train the preset's candidates and keep the best on the holdout."""
        from sklearn.pipeline import Pipeline

        spec = ctx.spec
        rows, targets = _load(ctx)
        ctx.checkpoint("prepare")
        target_type = spec.table.by_name[spec.target_column].data_type
        if len(rows) < MIN_ROWS:
            raise TrainingFailed(
                f"Training needs at least {MIN_ROWS} rows with a value in {spec.target_column}; "
                f"{spec.table.name} has {len(rows)}"
            )
        problem_type = spec.problem_type or infer_problem_type(target_type, targets)
        classes_seen = len(set(targets))
        if problem_type != "regression" and classes_seen < 2:
            raise TrainingFailed(
                f"{spec.target_column} has a single value in every row: there is nothing to "
                "classify"
            )
        if problem_type == "binary" and classes_seen > 2:
            raise TrainingFailed(
                f"problem_type binary needs two classes; {spec.target_column} has "
                f"{classes_seen} (use multiclass)"
            )
        features = tuple((n, spec.table.by_name[n].data_type) for n in spec.feature_columns)
        x_all = _matrix(rows, features)
        y_all = _target_array(target_type, problem_type, targets)
        classify = problem_type != "regression"
        train, test = _split(len(rows), y_all, classify)
        prep = _preprocessor(features).fit(x_all[train])
        x_train, x_test = prep.transform(x_all[train]), prep.transform(x_all[test])
        y_train, y_test = y_all[train], y_all[test]
        classes = sorted(set(y_all.tolist()), key=lambda v: (str(type(v)), v))
        best: tuple[float, str, Any, dict[str, Any]] | None = None
        scores: dict[str, float | None] = {}
        for name, make, total in _candidates(problem_type, spec.quality_preset):
            estimator = _fit(name, make, total, x_train, y_train, ctx)
            ctx.checkpoint("evaluate")
            found = _metrics(problem_type, y_test, estimator.predict(x_test), classes)
            score = _score(problem_type, found)
            scores[name] = None if math.isinf(score) else round(score, 6)
            if best is None or score > best[0]:
                best = (score, name, estimator, found)
        assert best is not None
        _, name, estimator, found = best
        ctx.checkpoint("save")
        metrics: dict[str, Any] = {
            **{k: v for k, v in found.items() if v is not None},
            "model": name,
            "training_rows": len(train),
            "holdout_rows": len(test),
            "candidate_scores": scores,
        }
        pipeline = Pipeline([("prepare", prep), ("model", estimator)])
        model = TabularModel(
            pipeline=pipeline, features=features, problem_type=problem_type, estimator=name
        )
        return TrainedModel(model=model, problem_type=problem_type, metrics=metrics)

    def check_rows(self, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Every feature present in every row (null allowed), each of its column's kind."""
        assert isinstance(model, TabularModel)
        problems: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            for name, data_type in model.features:
                if name not in row:
                    problems.append(
                        {
                            "loc": ["body", "data", i, name],
                            "msg": f"Feature {name} is missing (send null for an unknown value)",
                            "type": "missing",
                        }
                    )
                    continue
                try:
                    if data_type in NUMERIC_TYPES:
                        _number(data_type, row[name])
                    else:
                        _category(row[name])
                except ValueError as exc:
                    problems.append(
                        {
                            "loc": ["body", "data", i, name],
                            "msg": f"Feature {name} ({data_type}): {exc}",
                            "type": "value_error",
                        }
                    )
            if len(problems) >= 100:
                break
        if problems:
            raise HTTPError(422, problems)

    def predict(
        self, model: Any, rows: Sequence[Mapping[str, Any]], ctx: PredictContext
    ) -> PredictOutcome:
        """Predict for checked rows (the segmentation options do not apply)."""
        assert isinstance(model, TabularModel)
        x = _matrix(rows, model.features)
        predictions = [_json_value(v) for v in model.pipeline.predict(x)]
        if model.problem_type == "regression":
            return PredictOutcome(predictions=predictions)
        labels = [_label(c) for c in model.pipeline.classes_]
        probabilities = [
            {label: float(p) for label, p in zip(labels, row, strict=True)}
            for row in model.pipeline.predict_proba(x)
        ]
        return PredictOutcome(predictions=predictions, probabilities=probabilities)


TRAINER = TabularTrainer()

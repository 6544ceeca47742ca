"""ML models on the local server: the model and version rows, and their state changes.

Functions run on the database thread inside the caller's transaction (``conn`` first), like
:mod:`labric.server.core.records`. Every status change is a conditional update (``... WHERE
status = 'training'``), so a cancel and the trainer finishing can race without either undoing
the other: whichever commits first wins, and the loser sees that it changed nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

import attrs

from labric.server.ml_models.wire import IN_FLIGHT

__all__ = [
    "ModelRecord",
    "VersionRecord",
    "cancel_in_flight",
    "create_model",
    "detail",
    "fail_abandoned",
    "find_model",
    "finish",
    "in_flight",
    "list_models",
    "new_version",
    "serving_version",
    "start",
]

#: The detail's fields that come from the newest version.
_VERSION_FIELDS = (
    "target_column",
    "feature_columns",
    "image_columns",
    "problem_type",
    "status",
    "version_number",
    "dataset_id",
    "quality_preset",
    "error_message",
    "training_started_at",
    "training_completed_at",
    "evaluation_metrics",
)
_IN_FLIGHT_SQL = "(" + ", ".join(f"'{s}'" for s in IN_FLIGHT) + ")"


@attrs.frozen(kw_only=True)
class ModelRecord:
    """A model: its name, task type and when it was made (``rowid`` orders listings)."""

    rowid: int
    id: str
    org_id: str
    name: str
    description: str | None
    task_type: str
    created_at: str


@attrs.frozen(kw_only=True)
class VersionRecord:
    """One training run of a model."""

    id: str
    model_id: str
    version_number: int
    status: str
    dataset_id: str
    target_column: str
    feature_columns: list[str]
    image_columns: list[str]
    problem_type: str | None
    quality_preset: str
    error_message: str | None
    evaluation_metrics: dict[str, Any] | None
    artifact: str | None
    created_at: str
    training_started_at: str | None
    training_completed_at: str | None


def _model(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(
        rowid=row["rowid"],
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        description=row["description"],
        task_type=row["task_type"],
        created_at=row["created_at"],
    )


def _version(row: sqlite3.Row) -> VersionRecord:
    metrics = row["evaluation_metrics"]
    return VersionRecord(
        id=row["id"],
        model_id=row["model_id"],
        version_number=row["version_number"],
        status=row["status"],
        dataset_id=row["dataset_id"],
        target_column=row["target_column"],
        feature_columns=json.loads(row["feature_columns"]),
        image_columns=json.loads(row["image_columns"]),
        problem_type=row["problem_type"],
        quality_preset=row["quality_preset"],
        error_message=row["error_message"],
        evaluation_metrics=None if metrics is None else json.loads(metrics),
        artifact=row["artifact"],
        created_at=row["created_at"],
        training_started_at=row["training_started_at"],
        training_completed_at=row["training_completed_at"],
    )


def find_model(
    conn: sqlite3.Connection,
    org_id: str,
    *,
    model_id: str | None = None,
    name: str | None = None,
) -> ModelRecord | None:
    """A non-archived model of the organisation, by id or by name."""
    column, value = ("id", model_id) if model_id is not None else ("name", name)
    row = conn.execute(
        f"SELECT rowid, * FROM ml_models WHERE org_id = ? AND {column} = ? AND archived = 0",
        (org_id, value),
    ).fetchone()
    return None if row is None else _model(row)


def create_model(
    conn: sqlite3.Connection,
    *,
    model_id: str,
    org_id: str,
    name: str,
    description: str | None,
    task_type: str,
    now: str,
) -> ModelRecord | None:
    """Create a model; ``None`` when the organisation already has one of that name."""
    try:
        conn.execute(
            "INSERT INTO ml_models (id, org_id, name, description, task_type, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (model_id, org_id, name, description, task_type, now),
        )
    except sqlite3.IntegrityError:
        return None
    return find_model(conn, org_id, model_id=model_id)


def set_description(conn: sqlite3.Connection, model_id: str, description: str) -> None:
    """Replace a model's description (a retrain may bring a new one)."""
    conn.execute("UPDATE ml_models SET description = ? WHERE id = ?", (description, model_id))


def new_version(
    conn: sqlite3.Connection,
    *,
    version_id: str,
    model_id: str,
    fields: Mapping[str, Any],
    now: str,
) -> VersionRecord:
    """Add the model's next version, ``pending``.

    Args:
        fields: ``dataset_id``, ``target_column``, ``feature_columns``, ``image_columns``,
            ``problem_type`` (``None``: inferred in training) and ``quality_preset``.
    """
    (last,) = conn.execute(
        "SELECT coalesce(max(version_number), 0) FROM ml_model_versions WHERE model_id = ?",
        (model_id,),
    ).fetchone()
    conn.execute(
        "INSERT INTO ml_model_versions (id, model_id, version_number, status, dataset_id, "
        "target_column, feature_columns, image_columns, problem_type, quality_preset, "
        "created_at) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)",
        (
            version_id,
            model_id,
            last + 1,
            fields["dataset_id"],
            fields["target_column"],
            json.dumps(list(fields["feature_columns"])),
            json.dumps(list(fields["image_columns"])),
            fields["problem_type"],
            fields["quality_preset"],
            now,
        ),
    )
    found = version(conn, version_id)
    assert found is not None
    return found


def version(conn: sqlite3.Connection, version_id: str) -> VersionRecord | None:
    """One version by id."""
    row = conn.execute("SELECT * FROM ml_model_versions WHERE id = ?", (version_id,)).fetchone()
    return None if row is None else _version(row)


def _newest(conn: sqlite3.Connection, model_id: str) -> VersionRecord | None:
    row = conn.execute(
        "SELECT * FROM ml_model_versions WHERE model_id = ? ORDER BY version_number DESC LIMIT 1",
        (model_id,),
    ).fetchone()
    return None if row is None else _version(row)


def serving_version(conn: sqlite3.Connection, model_id: str) -> VersionRecord | None:
    """The version that answers predictions: the newest ready one, unless a newer version is
    pending or training (a retrain pauses serving until it is ready; a retrain that fails or is
    cancelled leaves the previous ready version serving)."""
    row = conn.execute(
        "SELECT * FROM ml_model_versions WHERE model_id = ? AND status = 'ready' "
        "ORDER BY version_number DESC LIMIT 1",
        (model_id,),
    ).fetchone()
    if row is None:
        return None
    newer = conn.execute(
        f"SELECT 1 FROM ml_model_versions WHERE model_id = ? AND version_number > ? "
        f"AND status IN {_IN_FLIGHT_SQL}",
        (model_id, row["version_number"]),
    ).fetchone()
    return None if newer is not None else _version(row)


def detail(conn: sqlite3.Connection, model: ModelRecord) -> dict[str, Any]:
    """The hosted ``ToolsMlModelDetailSchema`` of a model: its newest version's fields."""
    newest = _newest(conn, model.id)
    active = serving_version(conn, model.id) is not None
    out: dict[str, Any] = {
        "id": model.id,
        "name": model.name,
        "description": model.description,
        "task_type": model.task_type,
        "currently_active": active,
    }
    if newest is None:  # a model is created with its first version, so only in a race
        return {**out, **dict.fromkeys(_VERSION_FIELDS)}
    return {
        **out,
        "target_column": newest.target_column,
        "feature_columns": newest.feature_columns,
        "image_columns": newest.image_columns,
        "problem_type": newest.problem_type,
        "status": newest.status,
        "version_number": newest.version_number,
        "dataset_id": newest.dataset_id,
        "quality_preset": newest.quality_preset,
        "error_message": newest.error_message,
        "training_started_at": newest.training_started_at,
        "training_completed_at": newest.training_completed_at,
        "evaluation_metrics": newest.evaluation_metrics,
    }


def list_models(
    conn: sqlite3.Connection, org_id: str, *, after: tuple[str, int] | None, limit: int
) -> list[tuple[ModelRecord, dict[str, Any]]]:
    """Non-archived models, newest first, after a ``(created_at, rowid)`` cursor, with their
    details."""
    where = ["org_id = ?", "archived = 0"]
    params: list[Any] = [org_id]
    if after is not None:
        where.append("(created_at, rowid) < (?, ?)")
        params += [after[0], after[1]]
    sql = (
        f"SELECT rowid, * FROM ml_models WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?"
    )
    models = [_model(row) for row in conn.execute(sql, [*params, limit])]
    return [(m, detail(conn, m)) for m in models]


def start(conn: sqlite3.Connection, version_id: str, now: str) -> bool:
    """Move a pending version to ``training``; ``False`` when it is no longer pending."""
    cur = conn.execute(
        "UPDATE ml_model_versions SET status = 'training', training_started_at = ? "
        "WHERE id = ? AND status = 'pending'",
        (now, version_id),
    )
    return cur.rowcount == 1


def finish(
    conn: sqlite3.Connection,
    version_id: str,
    status: str,
    now: str,
    *,
    problem_type: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    artifact: str | None = None,
    error: str | None = None,
) -> bool:
    """End a training run (``ready``, ``failed`` or ``cancelled``); ``False`` when it had
    already ended (a cancel got there first)."""
    cur = conn.execute(
        "UPDATE ml_model_versions SET status = ?, training_completed_at = ?, "
        "problem_type = coalesce(?, problem_type), evaluation_metrics = ?, artifact = ?, "
        f"error_message = ? WHERE id = ? AND status IN {_IN_FLIGHT_SQL}",
        (
            status,
            now,
            problem_type,
            None if metrics is None else json.dumps(metrics, separators=(",", ":")),
            artifact,
            error,
            version_id,
        ),
    )
    return cur.rowcount == 1


def in_flight(conn: sqlite3.Connection, model_id: str) -> list[str]:
    """The ids of a model's pending or training versions."""
    return [
        row["id"]
        for row in conn.execute(
            f"SELECT id FROM ml_model_versions WHERE model_id = ? AND status IN {_IN_FLIGHT_SQL}",
            (model_id,),
        )
    ]


def cancel_in_flight(conn: sqlite3.Connection, model_id: str, now: str) -> list[str]:
    """Cancel every pending or training version of a model; return their ids."""
    ids = in_flight(conn, model_id)
    conn.execute(
        "UPDATE ml_model_versions SET status = 'cancelled', training_completed_at = ?, "
        f"error_message = 'Training was cancelled' WHERE model_id = ? "
        f"AND status IN {_IN_FLIGHT_SQL}",
        (now, model_id),
    )
    return ids


def fail_abandoned(conn: sqlite3.Connection, now: str) -> int:
    """Fail the versions a previous server process left pending or training."""
    cur = conn.execute(
        "UPDATE ml_model_versions SET status = 'failed', training_completed_at = ?, "
        "error_message = 'The server stopped before training finished; train again' "
        f"WHERE status IN {_IN_FLIGHT_SQL}",
        (now,),
    )
    return cur.rowcount

"""The ML models API: train in the background, list, get, cancel, predict (all hosted).

==================================================  =====  ======================================
route                                               scope  what
==================================================  =====  ======================================
``POST /v1/ml-models``                              write  train a new model, or retrain one as
                                                           its next version; answers at once
``GET  /v1/ml-models``                              read   non-archived models, newest first
``GET  /v1/ml-models/{ml_model_id}``                read   a model and its newest version;
                                                           ``wait`` (local) holds until trained
``POST /v1/ml-models/{ml_model_id}/cancel-training`` write  cancel every pending or training
                                                           version; 400 if none is
``POST /v1/ml-models/predict``                      read   one prediction per row, by model id
                                                           or name; nothing is saved
==================================================  =====  ======================================

Invariants
    * A model belongs to one organisation; another's ids are 404, exactly as missing ones.
    * Training needs ``dataset_id`` (one of the organisation's tables, by id), a
      ``target_column``, and ``name`` (a new model) or ``ml_model_id`` (a retrain: a new version
      of that model, same name and task type), never both. Every column named must exist in the
      table (422 naming those that do not). Feature columns default to every column that can be
      one except the target and ids.
    * A version moves ``pending`` -> ``training`` -> ``ready`` | ``failed`` | ``cancelled``; the
      model's ``status`` and fields are its newest version's. ``currently_active``: the model
      serves, i.e. a version is ready and no newer one is pending or training (a retrain pauses
      serving until it is ready; if it fails or is cancelled, the ready version serves again).
    * Predicting needs a serving model (400 otherwise, saying its status) and rows holding
      every feature column (null for unknown values); 422 names each bad cell.
    * Without scikit-learn (the ``ml`` extra) training and predicting answer 503 naming it.
    * Task types train through :mod:`.trainers` (tabular, segmentation); one without a trainer
      answers 422 saying why.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from labric.server.core import records
from labric.server.core.auth import principal
from labric.server.core.declare import (
    PAGE,
    Body,
    Operation,
    Param,
    Response,
    array,
    integer,
    path_param,
    ref,
)
from labric.server.core.http import Fields, HTTPError, json_response, read_json_object
from labric.server.core.paging import listing, respond
from labric.server.core.routing import Router, Routes
from labric.server.core.state import STATE, ServerState
from labric.server.datasets.routes import DATASETS
from labric.server.datasets.schema import TableDef
from labric.server.ml_models import store, wire
from labric.server.ml_models.runner import TrainingRunner
from labric.server.ml_models.trainers import (
    TRAINERS,
    UNAVAILABLE,
    TrainSpec,
    require_sklearn,
)
from labric.server.ml_models.trainers.tabular import DEFAULT_PRESET

__all__ = ["ML_TRAINING", "install", "register"]

ROUTES = Routes(wire.ML_MODELS)

#: The application's training runner.
ML_TRAINING = web.AppKey("labric_ml_training", TrainingRunner)

ML_MODEL_ID = path_param("ml_model_id", "The model", maxLength=128)
#: The longest ``wait`` of ``GET /v1/ml-models/{ml_model_id}``.
MAX_WAIT_SECONDS = 30


def install(app: web.Application, state: ServerState) -> None:
    """Give the application its training runner: started with it, stopped on cleanup (before
    the database closes)."""
    root = state.db.path.parent
    runner = TrainingRunner(state, root / "ml_models", root / "datasets")
    app[ML_TRAINING] = runner

    async def start(_app: web.Application) -> None:
        await runner.start()

    async def close(_app: web.Application) -> None:
        await runner.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)


# -- training ----------------------------------------------------------------------------------


def _read_train(body: dict[str, Any]) -> tuple[Fields, dict[str, Any]]:
    f = Fields(body)
    dataset_id = body.get("dataset_id")
    if isinstance(dataset_id, int) and not isinstance(dataset_id, bool):
        dataset_id = str(dataset_id)
    if dataset_id is None:
        f.add(["dataset_id"], "Field required", "missing")
    elif not isinstance(dataset_id, str) or not dataset_id.strip():
        f.add(["dataset_id"], "Input should be a table's id", "string_type")
        dataset_id = None
    fields: dict[str, Any] = {
        "dataset_id": dataset_id,
        "target_column": f.string("target_column", required=True, max_length=wire.MAX_NAME),
        "name": f.string("name", max_length=wire.MAX_NAME),
        "ml_model_id": f.string("ml_model_id", max_length=128),
        "description": f.string("description", max_length=wire.MAX_DESCRIPTION),
    }
    for name, choices in (
        ("task_type", wire.TASK_TYPES),
        ("quality_preset", wire.QUALITY_PRESETS),
        ("problem_type", wire.PROBLEM_TYPES),
    ):
        value = f.string(name)
        if value is not None and value not in choices:
            f.add([name], "Input should be " + ", ".join(repr(c) for c in choices), "enum")
            value = None
        fields[name] = value
    for name in ("feature_columns", "image_columns"):
        values = f.array(name)
        if values is not None:
            if len(values) > wire.MAX_COLUMNS:
                f.add([name], f"At most {wire.MAX_COLUMNS} columns", "too_long")
            elif not all(isinstance(v, str) for v in values):
                f.add([name], "Input should be a list of column names", "list_type")
            elif len(set(values)) != len(values):
                f.add([name], "A column is named twice", "value_error")
        fields[name] = values
    if fields["name"] is not None and not fields["name"].strip():
        f.add(["name"], "String should not be empty", "string_too_short")
        fields["name"] = None
    if fields["name"] is not None and fields["ml_model_id"] is not None:
        f.add(
            ["ml_model_id"],
            "Pass name to train a new model, or ml_model_id to retrain one, not both",
        )
    elif (
        fields["name"] is None
        and fields["ml_model_id"] is None
        and not any(p["loc"][:2] == ["body", "name"] for p in f.problems)
    ):
        f.add(["name"], "Pass name (a new model) or ml_model_id (retrain an existing one)")
    return f, fields


def _table(tables: list[TableDef], dataset_id: str) -> TableDef:
    for table in tables:
        if str(table.id) == dataset_id:
            return table
    raise HTTPError(404, f"Dataset {dataset_id} not found")


def _missing_columns(table: TableDef, fields: dict[str, Any]) -> None:
    problems = Fields({})
    for name in ("target_column", "feature_columns", "image_columns"):
        value = fields[name]
        wanted = [value] if isinstance(value, str) else (value or [])
        missing = [c for c in wanted if table.column(c) is None]
        if missing:
            problems.add(
                [name],
                f"Not a column of dataset {table.id} ({table.name}): {', '.join(missing)}",
                "missing_column",
            )
    problems.check()


def _task_type(fields: dict[str, Any], model: store.ModelRecord | None) -> str:
    asked = fields["task_type"]
    if model is not None:
        if asked is not None and asked != model.task_type:
            raise HTTPError(
                422,
                [
                    {
                        "loc": ["body", "task_type"],
                        "msg": f"Model {model.name} is a {model.task_type} model; a retrain "
                        "keeps its task type",
                        "type": "value_error",
                    }
                ],
            )
        return model.task_type
    if asked is not None:
        return str(asked)
    if fields["problem_type"] == "semantic_segmentation":
        return "segmentation"
    return "multimodal" if fields["image_columns"] else "tabular"


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/ml-models",
        scope="write",
        summary="Train a new model on a dataset table, or retrain one as its next version",
        description="Answers at once with the model, its new version pending; training runs "
        "in the background (poll GET /v1/ml-models/{ml_model_id}). Pass name for a new model "
        "or ml_model_id to retrain one (not both). Every column named must exist in the "
        "table. Without scikit-learn on the server the answer is 503.",
        body=Body(schema=ref("TrainMlModelRequest")),
        responses=(Response(schema=ref("MlModel")),),
        errors={
            404: "No such dataset, or no such model to retrain",
            503: "The server cannot train: scikit-learn (labric[ml]) is not installed",
        },
        hosted=True,
    )
)
async def train(request: web.Request) -> web.StreamResponse:
    """``POST /v1/ml-models``: check the request, store the pending version, queue it."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    f, fields = _read_train(await read_json_object(request))
    f.check()
    require_sklearn()
    org = await request.app[DATASETS].org(org_id)
    table = _table(org.catalog.own(), fields["dataset_id"])
    model = None
    if fields["ml_model_id"] is not None:
        model = await state.db.run(
            lambda conn: store.find_model(conn, org_id, model_id=fields["ml_model_id"])
        )
        if model is None:
            raise HTTPError(404, f"ML model {fields['ml_model_id']} not found")
    _missing_columns(table, fields)
    task_type = _task_type(fields, model)
    if task_type in UNAVAILABLE:
        where, why = UNAVAILABLE[task_type]
        raise HTTPError(422, [{"loc": ["body", where], "msg": why, "type": "value_error"}])
    trainer = TRAINERS[task_type]
    target = table.column(fields["target_column"])
    assert target is not None
    features = fields["feature_columns"]
    if features is None:
        features = trainer.default_features(table, target.name)
    features = [c.name for c in (table.column(n) for n in features) if c is not None]
    if target.name in features:
        raise HTTPError(
            422,
            [
                {
                    "loc": ["body", "feature_columns"],
                    "msg": f"The target column {target.name} cannot also be a feature",
                    "type": "value_error",
                }
            ],
        )
    spec = TrainSpec(
        table=table,
        target_column=target.name,
        feature_columns=tuple(features),
        image_columns=tuple(
            c.name for c in (table.column(n) for n in fields["image_columns"] or ()) if c
        ),
        problem_type=fields["problem_type"],
        quality_preset=fields["quality_preset"] or DEFAULT_PRESET,
    )
    trainer.check(spec)
    now = state.now()
    version_id = records.new_id()

    def create(conn: Any) -> dict[str, Any]:
        found = model
        if found is None:
            found = store.create_model(
                conn,
                model_id=records.new_id(),
                org_id=org_id,
                name=fields["name"],
                description=fields["description"],
                task_type=task_type,
                now=now,
            )
            if found is None:
                raise HTTPError(
                    422,
                    [
                        {
                            "loc": ["body", "name"],
                            "msg": f"A model named {fields['name']} exists; retrain it with "
                            "its ml_model_id, or choose another name",
                            "type": "value_error",
                        }
                    ],
                )
        elif fields["description"] is not None:
            store.set_description(conn, found.id, fields["description"])
            found = store.find_model(conn, org_id, model_id=found.id)
            assert found is not None
        store.new_version(
            conn,
            version_id=version_id,
            model_id=found.id,
            fields={
                "dataset_id": str(table.id),
                "target_column": spec.target_column,
                "feature_columns": spec.feature_columns,
                "image_columns": spec.image_columns,
                "problem_type": spec.problem_type,
                "quality_preset": spec.quality_preset,
            },
            now=now,
        )
        return store.detail(conn, found)

    answer = await state.db.run(create)
    request.app[ML_TRAINING].submit(org_id, version_id, trainer, spec)
    return json_response(answer)


# -- reading -----------------------------------------------------------------------------------


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/ml-models",
        scope="read",
        summary="The organisation's non-archived models, newest first",
        description="Each with its newest version's status and fields.",
        params=PAGE,
        responses=(Response(schema=array(ref("MlModel"))),),
        errors={400: "Invalid cursor"},
        paginated=True,
        hosted=True,
    )
)
async def list_models(request: web.Request) -> web.StreamResponse:
    """``GET /v1/ml-models``: newest first (paged on request)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    wanted = listing(state, Fields(request.query, "query"))

    async def fetch(after: tuple[str, int] | None, n: int) -> list[tuple[tuple[str, int], Any]]:
        found = await state.db.run(
            lambda conn: store.list_models(conn, org_id, after=after, limit=n)
        )
        return [((m.created_at, m.rowid), item) for m, item in found]

    return await respond(request, wanted, fetch)


async def _model(request: web.Request, org_id: str, **by: str) -> store.ModelRecord:
    found = await request.app[STATE].db.run(lambda conn: store.find_model(conn, org_id, **by))
    if found is None:
        raise HTTPError(404, f"ML model {next(iter(by.values()))} not found")
    return found


@ROUTES.route(
    Operation(
        method="GET",
        path="/v1/ml-models/{ml_model_id}",
        scope="read",
        summary="A model: its training status and results (its newest version's)",
        description="Local addition: `wait` holds the answer until no version of the model is "
        "pending or training (at most that many seconds); the hosted API answers at once.",
        params=(
            ML_MODEL_ID,
            Param(
                name="wait",
                where="query",
                schema=integer(minimum=0, maximum=MAX_WAIT_SECONDS),
                description="Seconds to wait for training in flight to end",
            ),
        ),
        responses=(Response(schema=ref("MlModel")),),
        errors={404: "No such model"},
        hosted=True,
    )
)
async def get_model(request: web.Request) -> web.StreamResponse:
    """``GET /v1/ml-models/{ml_model_id}`` (``wait`` holds until training in flight ends)."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    q = Fields(request.query, "query")
    wait = q.integer("wait", minimum=0, maximum=MAX_WAIT_SECONDS) or 0
    q.check()
    model = await _model(request, org_id, model_id=request.match_info["ml_model_id"])
    if wait:
        flying = await state.db.run(store.in_flight, model.id)
        await request.app[ML_TRAINING].settled(flying, timeout=wait)
    answer = await state.db.run(store.detail, model)
    return json_response(answer)


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/ml-models/{ml_model_id}/cancel-training",
        scope="write",
        summary="Cancel every pending or training version of a model",
        description="Each becomes cancelled at once, and its training stops at its next step. "
        "A model with nothing in flight answers 400.",
        params=(ML_MODEL_ID,),
        responses=(Response(schema=ref("MlModel")),),
        errors={400: "Nothing of the model is pending or training", 404: "No such model"},
        hosted=True,
    )
)
async def cancel_training(request: web.Request) -> web.StreamResponse:
    """``POST /v1/ml-models/{ml_model_id}/cancel-training``."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    model = await _model(request, org_id, model_id=request.match_info["ml_model_id"])
    now = state.now()

    def cancel(conn: Any) -> tuple[list[str], dict[str, Any]]:
        ids = store.cancel_in_flight(conn, model.id, now)
        return ids, store.detail(conn, model)

    ids, answer = await state.db.run(cancel)
    if not ids:
        raise HTTPError(
            400,
            f"ML model {model.id} has no training in flight to cancel (its newest version is "
            f"{answer['status']})",
        )
    request.app[ML_TRAINING].cancel(ids)
    return json_response(answer)


# -- predicting --------------------------------------------------------------------------------


def _fraction(f: Fields, body: dict[str, Any], name: str) -> float | None:
    """A number from 0 to 1 (a probability), or ``None`` when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        f.add([name], "Input should be a number from 0 to 1", "value_error")
        return None
    return float(value)


def _read_predict(body: dict[str, Any]) -> dict[str, Any]:
    f = Fields(body)
    data = f.array("data", required=True)
    if data is not None:
        if not data:
            f.add(["data"], "At least one row is needed", "too_short")
        elif len(data) > wire.MAX_PREDICT_ROWS:
            f.add(
                ["data"],
                f"At most {wire.MAX_PREDICT_ROWS} rows per request; split the rest",
                "too_long",
            )
        else:
            for i, row in enumerate(data):
                if not isinstance(row, dict):
                    f.add(["data", i], "Each row is an object of feature values", "dict_type")
    fields = {
        "data": data,
        "ml_model_id": f.string("ml_model_id", max_length=128),
        "ml_model_name": f.string("ml_model_name", max_length=wire.MAX_NAME),
        "options": {
            "pixel_threshold": _fraction(f, body, "pixel_threshold"),
            "min_region_pixels": f.integer("min_region_pixels", minimum=0),
            "max_hole_pixels": f.integer("max_hole_pixels", minimum=0),
            "min_confidence": _fraction(f, body, "min_confidence"),
        },
    }
    if fields["ml_model_id"] is None and fields["ml_model_name"] is None:
        f.add(["ml_model_id"], "Pass ml_model_id or ml_model_name", "missing")
    elif fields["ml_model_id"] is not None and fields["ml_model_name"] is not None:
        f.add(["ml_model_name"], "Pass ml_model_id or ml_model_name, not both")
    f.check()
    return fields


@ROUTES.route(
    Operation(
        method="POST",
        path="/v1/ml-models/predict",
        scope="read",
        summary="Predict with a model, by id or by name; nothing is saved",
        description="One prediction per row of data (feature column -> value), in order, and "
        "per-class probabilities for a classifier. The model must be serving "
        "(currently_active). A segmentation model's rows name image file ids in its image "
        "column; its annotations can be passed to images.annotate unchanged. The "
        "segmentation parameters apply to segmentation models only: pixel_threshold "
        "(default 0.5), max_hole_pixels (null fills every hole, 0 keeps them), "
        "min_region_pixels and min_confidence.",
        body=Body(schema=ref("PredictRequest"), limit=wire.MAX_PREDICT_BODY),
        responses=(Response(schema=ref("Prediction")),),
        errors={
            400: "The model is not serving (no ready version, or a retrain in progress)",
            404: "No such model",
            503: "The server cannot predict: scikit-learn (labric[ml]) is not installed",
        },
        hosted=True,
    )
)
async def predict(request: web.Request) -> web.StreamResponse:
    """``POST /v1/ml-models/predict``."""
    state = request.app[STATE]
    org_id = principal(request).org_id
    fields = _read_predict(await read_json_object(request))
    if fields["ml_model_id"] is not None:
        model = await _model(request, org_id, model_id=fields["ml_model_id"])
    else:
        model = await _model(request, org_id, name=fields["ml_model_name"])

    def serving(conn: Any) -> tuple[store.VersionRecord | None, dict[str, Any]]:
        return store.serving_version(conn, model.id), store.detail(conn, model)

    version, detail = await state.db.run(serving)
    if version is None or version.artifact is None:
        raise HTTPError(
            400,
            f"ML model {model.name} is not serving: its newest version is {detail['status']}"
            + (
                " (a retrain pauses serving until the new version is ready)"
                if detail["status"] in wire.IN_FLIGHT and (detail["version_number"] or 0) > 1
                else ""
            ),
        )
    require_sklearn()
    trainer = TRAINERS[model.task_type]
    outcome = await request.app[ML_TRAINING].predict(
        trainer, version.artifact, fields["data"], org_id=org_id, options=fields["options"]
    )
    return json_response(
        {
            "predictions": outcome.predictions,
            "probabilities": outcome.probabilities,
            "model_id": model.id,
            "model_name": model.name,
            "annotations": outcome.annotations,
        }
    )


def register(router: Router) -> None:
    """Add the ML models routes."""
    router.add(ROUTES)

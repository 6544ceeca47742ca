"""``client.ml_models``: train models on dataset tables, follow their training, predict."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Mapping, Sequence
from typing import Any

from labric._core.pagination import AsyncPager
from labric._core.urls import path_segment
from labric.errors import WaitTimeoutError
from labric.models.ml_models import (
    MlModel,
    MlModelTaskType,
    MlProblemType,
    Prediction,
    QualityPreset,
)
from labric.resources._base import AsyncResource

__all__ = ["AsyncMlModels"]

#: The first pause between polls of :meth:`AsyncMlModels.wait`, in seconds.
DEFAULT_POLL_INTERVAL = 0.5
#: The longest pause between polls.
MAX_POLL_INTERVAL = 5.0
#: The longest the server is asked to hold one poll.
MAX_HELD_POLL = 20.0


def _path(ml_model_id: str, suffix: str = "") -> str:
    return f"/v1/ml-models/{path_segment(ml_model_id, 'ml_model_id')}{suffix}"


class AsyncMlModels(AsyncResource):
    """Machine-learning models trained on the organisation's dataset tables.

    Training runs in the background on the server: :meth:`train` answers at once with the
    model's new version ``pending``; :meth:`wait` returns it once its ``status`` is ``ready``
    (or ``failed`` / ``cancelled``). A retrain (``ml_model_id=...``) adds a version to the same
    model, which stops serving predictions until that version is ready.
    """

    async def train(
        self,
        *,
        dataset_id: str | int,
        target_column: str,
        name: str | None = None,
        ml_model_id: str | None = None,
        description: str | None = None,
        task_type: MlModelTaskType | str | None = None,
        quality_preset: QualityPreset | str | None = None,
        feature_columns: Sequence[str] | None = None,
        image_columns: Sequence[str] | None = None,
        problem_type: MlProblemType | str | None = None,
    ) -> MlModel:
        """Train a new model on a dataset table, or retrain one as its next version.

        Args:
            dataset_id: The table's id (``TableInfo.id``).
            target_column: The column to predict.
            name: A new model's name (unique in the organisation). Not with ``ml_model_id``.
            ml_model_id: Retrain this model: a new version, same name. Not with ``name``.
            description: Free text.
            task_type: ``tabular`` (default), ``multimodal`` or ``segmentation``.
            quality_preset: From ``medium_quality`` (fastest, the default) to
                ``best_quality``.
            feature_columns: The columns to predict from; default: every column that can be
                one except the target and ids.
            image_columns: Image columns (multimodal and segmentation tasks).
            problem_type: ``binary``, ``multiclass`` or ``regression``; inferred from the
                target when unset.

        Returns:
            The model, its newest version ``pending``.

        Raises:
            ValueError: both or neither of ``name`` and ``ml_model_id``.
            UnprocessableEntityError: a column is not in the table, or cannot be used.
            NotFoundError: no such table, or no such model to retrain.
            InternalServerError: 503, the server cannot train (a local server without
                ``labric[ml]``).
            PermissionDeniedError: the key lacks the ``write`` scope.

        Example::

            model = await client.ml_models.train(
                dataset_id=table.id, target_column="passed", name="qc-pass"
            )
        """
        if (name is None) == (ml_model_id is None):
            raise ValueError("pass name (a new model) or ml_model_id (a retrain), not both")
        payload: dict[str, Any] = {"dataset_id": str(dataset_id), "target_column": target_column}
        optional: dict[str, Any] = {
            "name": name,
            "ml_model_id": ml_model_id,
            "description": description,
            "task_type": task_type,
            "quality_preset": quality_preset,
            "problem_type": problem_type,
        }
        payload.update({k: str(v) for k, v in optional.items() if v is not None})
        if feature_columns is not None:
            payload["feature_columns"] = builtins.list(feature_columns)
        if image_columns is not None:
            payload["image_columns"] = builtins.list(image_columns)
        response = await self._transport.request("POST", "/v1/ml-models", json=payload)
        return self._parse(response, MlModel)

    def list(
        self, *, limit: int | None = None, page_size: int | None = None
    ) -> AsyncPager[MlModel]:
        """List the organisation's models (not archived ones), newest first.

        Args:
            limit: The most models to yield in total.
            page_size: Models fetched per request (the server's default when unset).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every model.
        """
        return self._pager("/v1/ml-models", MlModel, limit=limit, page_size=page_size)

    async def get(self, ml_model_id: str) -> MlModel:
        """Get a model, with its newest version's training status and results.

        Raises:
            NotFoundError: no such model in the key's organisation.
        """
        response = await self._transport.request("GET", _path(ml_model_id))
        return self._parse(response, MlModel)

    async def wait(
        self,
        ml_model_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> MlModel:
        """Wait until no version of a model is pending or training, and return the model.

        Each poll asks the server to hold its answer until training ends (the local server
        does; others answer at once). Between answers that come back unfinished, the pause
        starts at ``poll_interval`` and grows by half each time, up to 5 seconds.

        Args:
            ml_model_id: The model.
            timeout: Give up after this many seconds (``None``: wait as long as it takes).
            poll_interval: The first pause between polls, in seconds.

        Returns:
            The model; check its ``status`` (``ready``, ``failed`` or ``cancelled``).

        Raises:
            WaitTimeoutError: ``timeout`` passed first (its ``ml_model_id`` and ``status`` say
                which and where). Training goes on.
            NotFoundError: no such model.
        """
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        path = _path(ml_model_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        read_timeout = self._transport.config.timeout.read
        hold_cap = MAX_HELD_POLL if read_timeout is None else min(MAX_HELD_POLL, read_timeout / 2)
        pause = poll_interval
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            held = int(hold_cap if remaining is None else min(hold_cap, max(remaining, 0.0)))
            asked = time.monotonic()
            response = await self._transport.request(
                "GET", path, params={"wait": held} if held >= 1 else None
            )
            model = self._parse(response, MlModel)
            if not model.in_flight:
                return model
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeoutError(
                    f"ML model {ml_model_id} was still {model.status} after {timeout:g} s; "
                    "its training goes on",
                    ml_model_id=ml_model_id,
                    status=None if model.status is None else str(model.status),
                )
            if held >= 1 and time.monotonic() - asked >= held * 0.9:
                continue  # the server held the poll for us: ask again at once
            await asyncio.sleep(pause if remaining is None else min(pause, remaining))
            pause = min(pause * 1.5, MAX_POLL_INTERVAL)

    async def cancel_training(self, ml_model_id: str) -> MlModel:
        """Cancel every pending or training version of a model.

        Returns:
            The model, its in-flight versions now ``cancelled``; training stops at its next
            step, and the previous ready version (if any) serves again.

        Raises:
            BadRequestError: nothing of the model is pending or training.
            NotFoundError: no such model.
        """
        response = await self._transport.request("POST", _path(ml_model_id, "/cancel-training"))
        return self._parse(response, MlModel)

    async def predict(
        self,
        data: Sequence[Mapping[str, Any]],
        *,
        ml_model_id: str | None = None,
        ml_model_name: str | None = None,
        pixel_threshold: float | None = None,
        min_region_pixels: int | None = None,
        max_hole_pixels: int | None = None,
        min_confidence: float | None = None,
    ) -> Prediction:
        """Predict with a serving model; nothing is saved.

        Args:
            data: One row per prediction: each maps every feature column (``feature_columns``
                of the model) to a value, ``None`` for an unknown one.
            ml_model_id: The model, by id. Give this or ``ml_model_name``.
            ml_model_name: The model, by name.
            pixel_threshold: Segmentation only: the probability above which a pixel is in a
                region.
            min_region_pixels: Segmentation only: drop smaller regions.
            max_hole_pixels: Segmentation only: fill holes up to this size (0 keeps them).
            min_confidence: Segmentation only: drop regions less confident than this.

        Returns:
            The predictions in input order, and class probabilities for a classifier.

        Raises:
            ValueError: both or neither of ``ml_model_id`` and ``ml_model_name``.
            BadRequestError: the model is not serving (no ready version, or a retrain is in
                progress).
            UnprocessableEntityError: a row lacks a feature or holds a value of the wrong kind.
            NotFoundError: no such model.

        Example::

            result = await client.ml_models.predict(
                [{"od600": 0.42, "medium": "LB"}], ml_model_name="growth"
            )
            result.predictions  # [1.73]
        """
        if (ml_model_id is None) == (ml_model_name is None):
            raise ValueError("pass ml_model_id or ml_model_name, not both")
        payload: dict[str, Any] = {"data": [dict(row) for row in data]}
        optional: dict[str, Any] = {
            "ml_model_id": ml_model_id,
            "ml_model_name": ml_model_name,
            "pixel_threshold": pixel_threshold,
            "min_region_pixels": min_region_pixels,
            "max_hole_pixels": max_hole_pixels,
            "min_confidence": min_confidence,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        response = await self._transport.request("POST", "/v1/ml-models/predict", json=payload)
        return self._parse(response, Prediction)

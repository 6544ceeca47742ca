"""``client.experiments``: experiments and their links to files and dataset rows."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from labric._core.converter import unstructure
from labric._core.pagination import AsyncPager
from labric._core.types import NOT_GIVEN, NotGiven
from labric._core.urls import path_segment
from labric.models.experiments import Experiment, ExperimentLinks, ExperimentRow, ExperimentStatus
from labric.models.files import FileInfo
from labric.resources._base import AsyncResource

__all__ = ["AsyncExperiments"]


def _path(experiment_id: str, suffix: str = "") -> str:
    return f"/v1/experiments/{path_segment(experiment_id, 'experiment_id')}{suffix}"


def _wire(value: Any) -> Any:
    """The JSON form of an argument: enums by value, datetimes as ISO 8601, mappings copied."""
    if isinstance(value, datetime):
        return unstructure(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    return getattr(value, "value", value)


class AsyncExperiments(AsyncResource):
    """Experiments: runs of work with a status, tags and metadata, linked to files and rows.

    Each experiment is also a row of the ``experiment`` platform table, so dataset tables can
    reference it and ``client.datasets.query("SELECT ... FROM core_experiment")`` sees it.
    """

    def list(
        self,
        *,
        status: ExperimentStatus | str | None = None,
        tag: str | None = None,
        query: str | None = None,
        limit: int | None = None,
        page_size: int | None = None,
    ) -> AsyncPager[Experiment]:
        """List experiments, newest first.

        Args:
            status: Only experiments with this status.
            tag: Only experiments carrying this tag.
            query: Space-separated terms that must all appear in the name or description (any
                case).
            limit: The most experiments to yield in total.
            page_size: Experiments fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every experiment.
        """
        params = {"status": _wire(status), "tag": tag, "query": query}
        return self._pager(
            "/v1/experiments", Experiment, params=params, limit=limit, page_size=page_size
        )

    async def get(self, experiment_id: str) -> Experiment:
        """Get one experiment.

        Raises:
            NotFoundError: no such experiment in the key's organisation.
        """
        response = await self._transport.request("GET", _path(experiment_id))
        return self._parse(response, Experiment)

    async def create(
        self,
        *,
        name: str,
        description: str | None = None,
        status: ExperimentStatus | str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: datetime | str | None = None,
        ended_at: datetime | str | None = None,
    ) -> Experiment:
        """Create an experiment.

        Args:
            name: What it is called (names need not be unique).
            description: Free text.
            status: ``planned`` (the default), ``running``, ``completed``, ``failed`` or
                ``archived``. Starting as ``running`` sets ``started_at`` to now unless given.
            tags: Labels to filter by.
            metadata: Any JSON object.
            started_at: When it started (naive datetimes are UTC).
            ended_at: When it ended (not before ``started_at``).

        Raises:
            UnprocessableEntityError: a field is invalid (the error lists each problem).

        Example::

            run = await client.experiments.create(
                name="Plate 42 kinetics", status="running", tags=["kinetics"],
                metadata={"operator": "ada"},
            )
        """
        fields = {
            "description": description,
            "status": status,
            "tags": tags,
            "metadata": metadata,
            "started_at": started_at,
            "ended_at": ended_at,
        }
        body: dict[str, Any] = {"name": name}
        body.update({k: _wire(v) for k, v in fields.items() if v is not None})
        response = await self._transport.request("POST", "/v1/experiments", json=body)
        return self._parse(response, Experiment)

    async def update(
        self,
        experiment_id: str,
        *,
        name: str | NotGiven = NOT_GIVEN,
        description: str | NotGiven = NOT_GIVEN,
        status: ExperimentStatus | str | NotGiven = NOT_GIVEN,
        tags: Sequence[str] | NotGiven = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        started_at: datetime | str | NotGiven = NOT_GIVEN,
        ended_at: datetime | str | NotGiven = NOT_GIVEN,
    ) -> Experiment:
        """Change an experiment; only the arguments given are sent, and only those fields change.

        Args:
            experiment_id: The experiment.
            name: A new name.
            description: A new description; ``""`` clears it.
            status: A new status. Moving to ``running`` sets ``started_at``, and to
                ``completed`` or ``failed`` sets ``ended_at``, to now when not set yet.
            tags: The new tags (replace the old ones; ``[]`` removes them all).
            metadata: The new metadata object (replaces the old one whole).
            started_at: When it started.
            ended_at: When it ended.

        Raises:
            NotFoundError: no such experiment in the key's organisation.
            UnprocessableEntityError: a field is invalid.
        """
        fields: dict[str, Any] = {
            "name": name,
            "description": description,
            "status": status,
            "tags": tags,
            "metadata": metadata,
            "started_at": started_at,
            "ended_at": ended_at,
        }
        body = {k: _wire(v) for k, v in fields.items() if not isinstance(v, NotGiven)}
        response = await self._transport.request("PATCH", _path(experiment_id), json=body)
        return self._parse(response, Experiment)

    async def delete(self, experiment_id: str) -> None:
        """Delete an experiment and its links (the files and rows themselves stay).

        Safe to retry: if an earlier attempt's outcome was unknown (a 5xx, a timeout, a lost
        connection) and a retry finds the experiment gone, that attempt deleted it and the call
        succeeds.

        Raises:
            ConflictError: a dataset table requires the experiment (a non-nullable reference).
            NotFoundError: no such experiment in the key's organisation (found missing by the first
                attempt).
        """
        await self._transport.request("DELETE", _path(experiment_id))

    async def link_files(self, experiment_id: str, file_ids: Sequence[str]) -> ExperimentLinks:
        """Link files to an experiment (linking one twice does nothing).

        Args:
            experiment_id: The experiment.
            file_ids: Up to 1,000 files of the organisation per call.

        Returns:
            How many links are new, and how many the experiment has.

        Raises:
            NotFoundError: no such experiment, or a file is unknown (then none is linked).
        """
        if isinstance(file_ids, str):
            raise TypeError("file_ids must be a sequence of ids, not one string")
        response = await self._transport.request(
            "POST", _path(experiment_id, "/files"), json={"file_ids": builtins.list(file_ids)}
        )
        return self._parse(response, ExperimentLinks)

    async def unlink_file(self, experiment_id: str, file_id: str) -> None:
        """Remove one file's link to an experiment (the file stays).

        Raises:
            NotFoundError: no such experiment, or the file is not linked to it.
        """
        await self._transport.request(
            "DELETE", _path(experiment_id, f"/files/{path_segment(file_id, 'file_id')}")
        )

    def files(
        self, experiment_id: str, *, limit: int | None = None, page_size: int | None = None
    ) -> AsyncPager[FileInfo]:
        """List the files linked to an experiment, newest first.

        Returns:
            A pager of :class:`~labric.models.FileInfo`, as ``client.files.list`` yields.
        """
        return self._pager(
            _path(experiment_id, "/files"), FileInfo, limit=limit, page_size=page_size
        )

    async def link_rows(
        self, experiment_id: str, rows: Sequence[ExperimentRow | tuple[str, str]]
    ) -> ExperimentLinks:
        """Link dataset rows to an experiment (all or none).

        Args:
            experiment_id: The experiment.
            rows: ``(table, row_id)`` pairs or :class:`ExperimentRow` s, up to 1,000 per call.

        Raises:
            NotFoundError: no such experiment.
            UnprocessableEntityError: a table or row does not exist (nothing is linked).
        """
        items = []
        for row in rows:
            table, row_id = (row.table, row.row_id) if isinstance(row, ExperimentRow) else row
            items.append({"table": table, "row_id": str(row_id)})
        response = await self._transport.request(
            "POST", _path(experiment_id, "/rows"), json={"rows": items}
        )
        return self._parse(response, ExperimentLinks)

    async def rows(self, experiment_id: str) -> builtins.list[ExperimentRow]:
        """The dataset rows linked to an experiment, oldest link first.

        Raises:
            NotFoundError: no such experiment.
        """
        response = await self._transport.request("GET", _path(experiment_id, "/rows"))
        return self._parse(response, builtins.list[ExperimentRow])

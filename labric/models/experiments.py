"""Models of the experiments resource (local server; design.md 3.6).

An experiment is also the ``experiment`` platform table's row, with the same field names, so
``client.datasets.rows("experiment")`` and SQL over ``core_experiment`` see the same records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = ["Experiment", "ExperimentLinks", "ExperimentRow", "ExperimentStatus"]


class ExperimentStatus(OpenEnum):
    """Where an experiment stands."""

    PLANNED = "planned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ARCHIVED = "archived"


@attrs.frozen(kw_only=True)
class Experiment:
    """An experiment: a run of work that files and dataset rows are linked to.

    Attributes:
        status: ``planned``, ``running``, ``completed``, ``failed`` or ``archived``.
        tags: Distinct labels, in the order given.
        metadata: Any JSON object.
        started_at: Set when given, or when the experiment first moves to ``running``.
        ended_at: Set when given, or when it first moves to ``completed`` or ``failed``.
    """

    __repr__ = bounded_repr

    id: str
    name: str
    status: ExperimentStatus | str
    description: str | None = None
    tags: list[str] = attrs.field(factory=list)
    metadata: dict[str, Any] = attrs.field(factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class ExperimentRow:
    """A dataset row linked to an experiment: the table's SQL name and the row's id."""

    table: str
    row_id: str


@attrs.frozen(kw_only=True)
class ExperimentLinks:
    """The result of linking files or rows: how many links are new, and how many there are."""

    linked: int
    total: int

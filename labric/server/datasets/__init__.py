"""Datasets on the local server: organisation tables, the SQL boundary, and ``data/write``.

Modules:

* :mod:`.schema`: table and column definitions, types and their stored forms, platform tables.
* :mod:`.store`: one SQLite file per organisation with its writer thread, shared reader threads,
  and the platform API other routes use (see below).
* :mod:`.boundary`: read-only SQL over one organisation's tables (``tools/query``, dashboards).
* :mod:`.define`: reading a table definition (``POST /v1/datasets``).
* :mod:`.reads`: ``tools/read`` filters and pages.
* :mod:`.validate`: ``data/write`` phase 1, validating and planning a request.
* :mod:`.write`: ``data/write`` phase 2, the writes, and revert.
* :mod:`.platform`: platform rows as the record routes write them.
* :mod:`.routes`: the HTTP handlers; :mod:`.wire`: the family's component schemas.
* :mod:`.legacy`: the deprecated ``tools/write`` and ``tools/batch-write``, on the same engine.

The platform API, for the routes that keep experiments, instruments and dashboards::

    store = request.app[DATASETS]
    await store.upsert_platform_row(org_id, "experiment", {"id": ..., "name": ..., ...})
    await store.delete_platform_row(org_id, "instrument", instrument_id)
    await store.link_experiment_rows(org_id, experiment_id, [("samples", row_id)])
    links = await store.experiment_rows(org_id, experiment_id)
    result = await store.run_readonly_query(org_id, "SELECT ... WHERE x = %s", [1], limit=1000)
"""

from labric.server.core.routing import Router
from labric.server.datasets import legacy, routes
from labric.server.datasets.boundary import QueryError, QueryOutcome
from labric.server.datasets.routes import DATASETS, install
from labric.server.datasets.store import (
    Busy,
    DatasetLimits,
    DatasetStore,
    OrgDatabase,
    PlatformRowInUse,
)

__all__ = [
    "DATASETS",
    "Busy",
    "DatasetLimits",
    "DatasetStore",
    "OrgDatabase",
    "PlatformRowInUse",
    "QueryError",
    "QueryOutcome",
    "install",
    "register",
]


def register(router: Router) -> None:
    """Add the dataset routes and the deprecated write routes."""
    routes.register(router)
    legacy.register(router)

"""The platform tables' rows as routes write them: a record's row upserted or deleted along
with it, and the answers when the organisation's data is locked or its rows are referenced."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from labric.server.core.http import HTTPError
from labric.server.datasets.routes import DATASETS, RETRY_AFTER
from labric.server.datasets.store import Busy, PlatformRowInUse

__all__ = ["busy_error", "delete_platform_row", "upsert_platform_row"]


def busy_error() -> HTTPError:
    """A 429 for a write the organisation's locked data file refused."""
    return HTTPError(
        429,
        f"The organisation's data is locked by other writes; retry after {RETRY_AFTER} s",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


async def upsert_platform_row(
    request: web.Request, org_id: str, table: str, row: Mapping[str, Any]
) -> None:
    """Write a record's row of a platform table (idempotent; 429 when the data is locked)."""
    try:
        await request.app[DATASETS].upsert_platform_row(org_id, table, row)
    except Busy:
        raise busy_error() from None


async def delete_platform_row(request: web.Request, org_id: str, table: str, row_id: str) -> None:
    """Delete a record's platform row (409 when dataset rows require it, 429 when locked)."""
    try:
        await request.app[DATASETS].delete_platform_row(org_id, table, row_id)
    except PlatformRowInUse as exc:
        raise HTTPError(
            409, f"{exc}; change or delete those rows first (nothing was deleted)"
        ) from None
    except Busy:
        raise busy_error() from None

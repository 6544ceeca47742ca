"""The blocking client's dashboards: every method once, through ``Labric``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labric import Labric, SyncPager
from labric.errors import NotFoundError
from labric.models import (
    ChartWidget,
    Dashboard,
    MetricWidget,
    SQLSource,
    TextWidget,
    WidgetData,
    WidgetLayout,
)
from labric.server import ThreadedServer


@pytest.fixture
def sync_client(tmp_path: Path) -> Iterator[Labric]:
    """A blocking client of a local server running on its own thread."""
    with (
        ThreadedServer(tmp_path / "server") as server,
        Labric(server.admin_key, base_url=server.base_url) as client,
    ):
        yield client


def test_sync_dashboards(sync_client: Labric) -> None:
    sync_client.datasets.create("runs", columns=[{"name": "yield_pct", "type": "float"}])
    sync_client.datasets.write("runs", [{"yield_pct": v} for v in (40.0, 55.5, 61.0)])
    board = sync_client.dashboards.create(
        name="Yield",
        widgets=[
            MetricWidget(
                id="best",
                unit="%",
                layout=WidgetLayout(x=0, y=0, w=3, h=2),
                source=SQLSource(query="SELECT max(yield_pct) FROM runs"),
            ),
            ChartWidget(
                id="spread",
                kind="histogram",
                bins=3,
                source=SQLSource(query="SELECT yield_pct FROM runs"),
            ),
        ],
    )
    assert isinstance(board, Dashboard)
    assert sync_client.dashboards.get(board.id) == board
    pager = sync_client.dashboards.list(page_size=1)
    assert isinstance(pager, SyncPager)
    assert [d.id for d in pager] == [board.id]
    best = sync_client.dashboards.widget_data(board.id, "best")
    assert isinstance(best, WidgetData)
    assert (best.value, best.unit) == (61.0, "%")
    spread = sync_client.dashboards.widget_data(board.id, "spread")
    assert [row[2] for row in spread.rows] == [1, 0, 2]
    updated = sync_client.dashboards.update(
        board.id, name="Yields", widgets=[*board.widgets, TextWidget(markdown="done")]
    )
    assert updated.name == "Yields"
    assert updated.widgets[:2] == board.widgets
    sync_client.dashboards.delete(board.id)
    with pytest.raises(NotFoundError):
        sync_client.dashboards.get(board.id)


def test_sync_render(sync_client: Labric, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    board = sync_client.dashboards.create(
        name="Notes",
        widgets=[TextWidget(markdown="hello", layout=WidgetLayout(x=0, y=0, w=4, h=2))],
    )
    target = sync_client.dashboards.render(board.id, tmp_path / "notes.png", dpi=30)
    assert target.read_bytes()[:4] == b"\x89PNG"

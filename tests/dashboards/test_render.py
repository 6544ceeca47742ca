"""``dashboards.render``: the dashboard drawn to a PNG with matplotlib, when it is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from labric import AsyncLabric
from labric.errors import NotFoundError
from labric.models import (
    ChartWidget,
    DatasetSource,
    MetricWidget,
    SQLSource,
    TableWidget,
    TextWidget,
    WidgetLayout,
)

DPI = 40
WIDGETS = [
    ChartWidget(
        id="line",
        kind="line",
        title="OD600 by day",
        layout=WidgetLayout(x=0, y=0, w=6, h=4),
        x="day",
        y=["od600"],
        source=SQLSource(query="SELECT day, od600 FROM samples WHERE strain = 'wt' ORDER BY day"),
    ),
    ChartWidget(
        id="bar",
        kind="bar",
        layout=WidgetLayout(x=6, y=0, w=6, h=4),
        source=SQLSource(
            query="SELECT strain, max(od600) AS top, min(od600) AS low FROM samples GROUP BY strain"
        ),
    ),
    ChartWidget(
        id="scatter",
        kind="scatter",
        layout=WidgetLayout(x=0, y=4, w=4, h=4),
        x="day",
        y=["od600"],
        source=DatasetSource(table="samples", columns=["day", "od600"]),
    ),
    ChartWidget(
        id="histogram",
        kind="histogram",
        bins=3,
        layout=WidgetLayout(x=4, y=4, w=4, h=4),
        source=SQLSource(query="SELECT od600 FROM samples"),
    ),
    TableWidget(
        id="table",
        layout=WidgetLayout(x=8, y=4, w=4, h=4),
        source=DatasetSource(table="samples", columns=["name", "od600", "ok"]),
    ),
    MetricWidget(
        id="metric",
        label="Samples",
        layout=WidgetLayout(x=0, y=8, w=3, h=2),
        source=SQLSource(query="SELECT count(*) FROM samples"),
    ),
    TextWidget(
        id="text", markdown="# Notes\nGrowth looks normal.", layout=WidgetLayout(x=3, y=8, w=6, h=2)
    ),
    TableWidget(
        id="broken",
        layout=WidgetLayout(x=9, y=8, w=3, h=2),
        source=SQLSource(query="SELECT * FROM api_keys"),
    ),
]


async def test_render_draws_every_widget_in_its_cell(samples: AsyncLabric, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    board = await samples.dashboards.create(name="Growth", widgets=WIDGETS)
    target = tmp_path / "growth.png"
    written = await samples.dashboards.render(board.id, target, dpi=DPI)
    assert written == target
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(target)
    rows = 10  # the lowest widget ends on grid row 10
    height, width = pixels.shape[:2]
    assert width == 12 * DPI
    assert height == round((rows * 0.75 + 0.6) * DPI)
    grid_top = round(0.6 * DPI)  # the title band
    for widget in board.widgets:
        layout = widget.layout
        assert layout is not None
        cell = pixels[
            grid_top + round(layout.y * 0.75 * DPI) : grid_top
            + round((layout.y + layout.h) * 0.75 * DPI),
            layout.x * DPI : (layout.x + layout.w) * DPI,
        ]
        # Something is drawn in every cell: not one flat colour.
        assert cell.reshape(-1, cell.shape[-1]).std(axis=0).max() > 0.01, widget.id


async def test_render_an_empty_dashboard(client: AsyncLabric, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    board = await client.dashboards.create(name="Empty")
    target = await client.dashboards.render(board.id, str(tmp_path / "empty.png"), dpi=DPI)
    assert target.stat().st_size > 0


async def test_render_a_missing_dashboard(client: AsyncLabric, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(NotFoundError):
        await client.dashboards.render("nope", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(ValueError, match="dpi"):
        await client.dashboards.render("nope", tmp_path / "x.png", dpi=0)


async def test_render_without_matplotlib_says_what_to_install(
    client: AsyncLabric, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ImportError, match=r"pip install 'labric\[plot\]'"):
        # Refused before any request: the dashboard does not even have to exist.
        await client.dashboards.render("nope", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

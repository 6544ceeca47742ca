"""Drawing a dashboard to a PNG with matplotlib, so a person can look at it from a script.

matplotlib is optional: it is imported only here, and only when a dashboard is drawn
(:func:`require` checks for it before any request is made). Drawing uses a bare
``matplotlib.figure.Figure`` on the Agg canvas, never ``pyplot``, so it keeps no global state and
may run on any thread (the client runs it on a worker thread, off the event loop).

The figure follows the dashboard's grid: 12 columns across, as many rows as the lowest widget
reaches, each widget in its own cell. A widget whose data could not be computed shows the
server's reason in its cell instead of failing the whole drawing.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labric.models.dashboards import (
    ChartWidget,
    Dashboard,
    MetricWidget,
    TableWidget,
    TextWidget,
    UnknownWidget,
    Widget,
    WidgetData,
    WidgetLayout,
)

__all__ = ["GRID_COLUMNS", "draw", "require"]

GRID_COLUMNS = 12
#: Inches per grid column and per grid row.
CELL_WIDTH = 1.0
CELL_HEIGHT = 0.75
#: The most table rows drawn (the rest are counted below the table).
MAX_TABLE_ROWS = 20
_TITLE_BAND = 0.6  # inches above the grid for the dashboard's name


def require() -> None:
    """Check that matplotlib can be imported.

    Raises:
        ImportError: it is not installed; the message says what to install.
    """
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise ImportError(
            "dashboards.render draws with matplotlib, which is not installed: "
            "pip install 'labric[plot]' (or pip install matplotlib)"
        ) from None


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"cannot plot {value!r}: not a number")
    return float(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _chart(ax: Any, widget: ChartWidget, data: WidgetData) -> None:
    kind = str(data.kind or widget.kind)
    if kind == "histogram":
        starts = [_number(r[0]) for r in data.rows]
        widths = [_number(r[1]) - _number(r[0]) for r in data.rows]
        ax.bar(starts, [_number(r[2]) for r in data.rows], width=widths, align="edge")
        ax.set_xlabel(data.column or "")
        ax.set_ylabel("count")
        return
    xs: list[Any] = data.series(data.x) if data.x is not None else list(range(len(data.rows)))
    ys = data.y or []
    if kind == "bar":
        slots = range(len(xs))
        width = 0.8 / max(len(ys), 1)
        for index, name in enumerate(ys):
            offsets = [s - 0.4 + width * (index + 0.5) for s in slots]
            ax.bar(offsets, [_number(v) for v in data.series(name)], width=width, label=name)
        ax.set_xticks(list(slots), [_text(x) for x in xs])
    else:
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
        positions = xs if numeric else [_text(x) for x in xs]
        for name in ys:
            values = [_number(v) for v in data.series(name)]
            if kind == "scatter":
                ax.scatter(positions, values, label=name, s=12)
            else:
                ax.plot(positions, values, label=name, marker="o" if len(values) <= 30 else None)
    if data.x is not None:
        ax.set_xlabel(data.x)
    if len(ys) > 1:
        ax.legend(fontsize="small")
    elif ys:
        ax.set_ylabel(ys[0])


def _table(ax: Any, data: WidgetData) -> None:
    ax.axis("off")
    if not data.columns:
        return
    shown = data.rows[:MAX_TABLE_ROWS]
    if shown:
        table = ax.table(
            cellText=[[_text(v) for v in row] for row in shown],
            colLabels=data.columns,
            loc="upper center",
        )
    else:
        table = ax.table(colLabels=data.columns, loc="upper center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    rest = len(data.rows) - len(shown)
    if rest > 0:
        ax.text(0.5, 0.0, f"... {rest} more rows", ha="center", va="bottom", fontsize=8)


def _metric(ax: Any, widget: MetricWidget, data: WidgetData) -> None:
    ax.axis("off")
    value = "-" if data.value is None else _text(data.value)
    unit = data.unit or widget.unit
    ax.text(
        0.5,
        0.55,
        f"{value} {unit}" if unit else value,
        ha="center",
        va="center",
        fontsize=24,
        weight="bold",
    )
    label = data.label or widget.label
    if label:
        ax.text(0.5, 0.2, label, ha="center", va="center", fontsize=11, color="0.35")


def _message(ax: Any, text: str, *, color: str = "0.2", size: float = 9) -> None:
    ax.axis("off")
    ax.text(0.0, 1.0, text, ha="left", va="top", fontsize=size, color=color, wrap=True)


def _place(layout: WidgetLayout | None, rows: int) -> tuple[float, float, float, float]:
    placed = layout or WidgetLayout(x=0, y=0, w=GRID_COLUMNS, h=1)
    return (
        placed.x / GRID_COLUMNS,
        1 - (placed.y + placed.h) / rows,
        placed.w / GRID_COLUMNS,
        placed.h / rows,
    )


def _draw_widget(ax: Any, widget: Widget, data: WidgetData | str | None) -> None:
    if widget.title:
        ax.set_title(widget.title, fontsize=10, loc="left")
    if isinstance(widget, TextWidget):
        _message(ax, widget.markdown, size=10)
        return
    if isinstance(widget, UnknownWidget):
        _message(ax, f"A {widget.type!r} widget: this release cannot draw it")
        return
    if isinstance(data, str):
        _message(ax, data, color="firebrick")
        return
    assert data is not None
    try:
        if isinstance(widget, ChartWidget):
            _chart(ax, widget, data)
        elif isinstance(widget, TableWidget):
            _table(ax, data)
        else:
            _metric(ax, widget, data)
    except (TypeError, ValueError, KeyError) as exc:
        ax.clear()
        _message(ax, f"Cannot draw this widget: {exc}", color="firebrick")


def draw(
    dashboard: Dashboard,
    data: Mapping[str, WidgetData | str],
    path: Path,
    *,
    dpi: int,
) -> None:
    """Draw ``dashboard`` to a PNG at ``path``.

    Args:
        dashboard: The dashboard, with its widgets' layouts.
        data: Each widget's evaluated data by widget id, or the reason it has none.
        path: Where the PNG goes (replaced if it exists).
        dpi: Pixels per inch (a grid column is :data:`CELL_WIDTH` inches wide).
    """
    require()
    # Imported by name so that type-checking labric never needs matplotlib installed.
    canvas_cls = importlib.import_module("matplotlib.backends.backend_agg").FigureCanvasAgg
    figure_cls = importlib.import_module("matplotlib.figure").Figure

    rows = max([w.layout.y + w.layout.h for w in dashboard.widgets if w.layout] + [1])
    grid_height = rows * CELL_HEIGHT
    figure = figure_cls(figsize=(GRID_COLUMNS * CELL_WIDTH, grid_height + _TITLE_BAND), dpi=dpi)
    canvas_cls(figure)
    figure.text(0.01, 1 - 0.15 / (grid_height + _TITLE_BAND), dashboard.name, va="top", size=14)
    top = grid_height / (grid_height + _TITLE_BAND)  # the grid's share of the figure's height
    # Room inside each cell for tick labels and axis labels (more on the left, where the y
    # axis's labels go), in figure fractions.
    pad_left, pad_right = 0.65 / GRID_COLUMNS, 0.15 / GRID_COLUMNS
    pad_y = 0.35 / rows
    for widget in dashboard.widgets:
        left, bottom, width, height = _place(widget.layout, rows)
        ax = figure.add_axes(
            (
                left + pad_left,
                (bottom + pad_y) * top,
                max(width - pad_left - pad_right, 0.01),
                max(height - 2 * pad_y, 0.01) * top,
            )
        )
        _draw_widget(ax, widget, data.get(widget.id or ""))
    figure.savefig(path, format="png")

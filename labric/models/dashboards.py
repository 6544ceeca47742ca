"""Models of the dashboards resource (local-server routes; the hosted API has none yet).

A :class:`Dashboard` holds widgets, each one of :data:`Widget`: :class:`ChartWidget`,
:class:`TableWidget`, :class:`MetricWidget` or :class:`TextWidget`, told apart on the wire by
their ``type`` (a widget type this release does not know arrives as :class:`UnknownWidget`, and
is sent back unchanged). Every widget but text reads a :data:`WidgetSource`: :class:`SQLSource`
(read-only SQL, as ``datasets.query``) or :class:`DatasetSource` (rows of one table, as
``datasets.rows``). :class:`WidgetData` is what evaluating a widget gives.

Example::

    await client.dashboards.create(name="Growth", widgets=[
        ChartWidget(
            kind="line",
            title="OD600 over time",
            layout=WidgetLayout(x=0, y=0, w=8, h=4),
            source=SQLSource(query="SELECT taken_at, od600 FROM samples ORDER BY taken_at"),
        ),
        MetricWidget(
            label="Samples",
            layout=WidgetLayout(x=8, y=0, w=4, h=2),
            source=SQLSource(query="SELECT count(*) FROM samples"),
        ),
    ])
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import attrs

from labric.models._base import OpenEnum, bounded_repr

__all__ = [
    "ChartKind",
    "ChartWidget",
    "Dashboard",
    "DatasetSource",
    "MetricWidget",
    "SQLSource",
    "TableWidget",
    "TextWidget",
    "UnknownWidget",
    "Widget",
    "WidgetData",
    "WidgetLayout",
    "WidgetSource",
]


class ChartKind(OpenEnum):
    """What a chart widget draws."""

    LINE = "line"
    BAR = "bar"
    SCATTER = "scatter"
    HISTOGRAM = "histogram"


@attrs.frozen(kw_only=True)
class WidgetLayout:
    """Where a widget sits on the dashboard's 12-column grid.

    Attributes:
        x: The first grid column (0-11).
        y: The first grid row (0 or more).
        w: Width in grid columns (``x + w`` at most 12).
        h: Height in grid rows (1 or more).
    """

    x: int
    y: int
    w: int
    h: int


@attrs.frozen(kw_only=True)
class SQLSource:
    """A read-only SQL query, run under the same boundary as ``datasets.query``.

    Attributes:
        query: One SELECT statement with positional ``%s`` placeholders (``%%`` is a literal %).
        params: One value per placeholder.
    """

    __repr__ = bounded_repr

    type: ClassVar[str] = "sql"
    query: str
    params: list[Any] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class DatasetSource:
    """Rows of one table, filtered as ``datasets.rows`` filters them.

    Attributes:
        table: The table (``experiment`` or ``core_experiment`` for a platform table).
        columns: The columns, in order (default: all of them).
        filters: Column -> value each row must equal (``None`` matches null); ``sample__name``
            follows the foreign key ``sample``.
        order_by: Sort by this column (default: insertion order).
        descending: Sort in descending order.
        limit: The most rows.
    """

    __repr__ = bounded_repr

    type: ClassVar[str] = "dataset"
    table: str
    columns: list[str] | None = None
    filters: dict[str, Any] = attrs.field(factory=dict)
    order_by: str | None = None
    descending: bool = False
    limit: int | None = None


#: Where a widget's data comes from.
WidgetSource = SQLSource | DatasetSource


@attrs.frozen(kw_only=True)
class ChartWidget:
    """A chart of the source's rows.

    Attributes:
        kind: ``line``, ``bar``, ``scatter`` or ``histogram``.
        source: Where the rows come from.
        id: Unique within the dashboard; the server makes one up when it is left out.
        title: Shown above the chart.
        layout: Its place on the grid; the server stacks a widget without one under the others.
        x: The column along the x axis (default: the first).
        y: The columns plotted against it (default: every other column).
        column: The column a histogram bins (default: the first).
        bins: How many equal-width bins a histogram has (default 10).
    """

    __repr__ = bounded_repr

    type: ClassVar[str] = "chart"
    kind: ChartKind | str
    source: WidgetSource
    id: str | None = None
    title: str | None = None
    layout: WidgetLayout | None = None
    x: str | None = None
    y: list[str] | None = None
    column: str | None = None
    bins: int | None = None


@attrs.frozen(kw_only=True)
class TableWidget:
    """The source's rows as a table (see :class:`ChartWidget` for the shared attributes)."""

    type: ClassVar[str] = "table"
    source: WidgetSource
    id: str | None = None
    title: str | None = None
    layout: WidgetLayout | None = None


@attrs.frozen(kw_only=True)
class MetricWidget:
    """One value: the first column of the source's first row.

    Attributes:
        label: What the value is, e.g. ``"Samples"``.
        unit: Its unit, e.g. ``"mg/L"``.
    """

    type: ClassVar[str] = "metric"
    source: WidgetSource
    id: str | None = None
    title: str | None = None
    layout: WidgetLayout | None = None
    label: str | None = None
    unit: str | None = None


@attrs.frozen(kw_only=True)
class TextWidget:
    """Markdown text; it has no source."""

    type: ClassVar[str] = "text"
    markdown: str
    id: str | None = None
    title: str | None = None
    layout: WidgetLayout | None = None


@attrs.frozen(kw_only=True)
class UnknownWidget:
    """A widget of a type this release does not know; ``data`` is the widget as sent.

    It goes back to the server unchanged when it is part of an update.
    """

    __repr__ = bounded_repr

    type: str
    data: dict[str, Any]
    id: str | None = None
    title: str | None = None
    layout: WidgetLayout | None = None


#: Any widget (structured by its ``type``).
Widget = ChartWidget | TableWidget | MetricWidget | TextWidget | UnknownWidget


@attrs.frozen(kw_only=True)
class Dashboard:
    """A dashboard: widgets laid out on a grid."""

    __repr__ = bounded_repr

    id: str
    name: str
    description: str | None = None
    widgets: list[Widget] = attrs.field(factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def widget(self, widget_id: str) -> Widget:
        """The widget with this id.

        Raises:
            KeyError: the dashboard has no such widget.
        """
        for widget in self.widgets:
            if widget.id == widget_id:
                return widget
        raise KeyError(f"dashboard {self.id} has no widget {widget_id!r}")


@attrs.frozen(kw_only=True)
class WidgetData:
    """One widget, evaluated: column names and row-major rows, plus what its type needs.

    Attributes:
        widget_id: The widget.
        type: ``chart``, ``table``, ``metric`` or ``text``.
        columns: The result's column names (a histogram's are ``bin_start``, ``bin_end``,
            ``count``; a text widget has none).
        rows: The result's rows.
        kind: A chart's kind.
        x: The column along a chart's x axis (``None``: the row number).
        y: The columns a chart plots against ``x``.
        column: The column a histogram binned.
        bins: The number of bins of a histogram.
        value: A metric's value.
        label: A metric's label.
        unit: A metric's unit.
        markdown: A text widget's text.
    """

    __repr__ = bounded_repr

    widget_id: str
    type: str
    columns: list[str]
    rows: list[list[Any]]
    kind: ChartKind | str | None = None
    x: str | None = None
    y: list[str] | None = None
    column: str | None = None
    bins: int | None = None
    value: Any = None
    label: str | None = None
    unit: str | None = None
    markdown: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield each row as a dict keyed by column name."""
        for row in self.rows:
            yield dict(zip(self.columns, row, strict=False))

    def series(self, name: str) -> list[Any]:
        """Every row's value in one column.

        Raises:
            KeyError: no such column.
        """
        if name not in self.columns:
            raise KeyError(f"no column {name!r} (columns: {', '.join(self.columns)})")
        at = self.columns.index(name)
        return [row[at] for row in self.rows]

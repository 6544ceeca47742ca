"""``client.dashboards``: every method against the real local server, and the widget models."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from labric import AsyncLabric, Page
from labric._core.converter import structure, unstructure
from labric.errors import (
    APIResponseValidationError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from labric.models import (
    ChartKind,
    ChartWidget,
    Dashboard,
    DatasetSource,
    MetricWidget,
    SQLSource,
    TableWidget,
    TextWidget,
    UnknownWidget,
    Widget,
    WidgetLayout,
)
from labric.server import LocalServer

CHART = ChartWidget(
    id="growth",
    kind=ChartKind.LINE,
    title="OD600 by day",
    layout=WidgetLayout(x=0, y=0, w=8, h=4),
    x="day",
    y=["od600"],
    source=SQLSource(query="SELECT day, od600 FROM samples WHERE strain = %s", params=["wt"]),
)
METRIC = MetricWidget(
    id="count",
    label="Samples",
    unit="n",
    layout=WidgetLayout(x=8, y=0, w=4, h=2),
    source=DatasetSource(table="samples", columns=["name"], filters={"ok": True}, limit=1),
)


async def test_create_get_and_round_trip_models(client: AsyncLabric) -> None:
    board = await client.dashboards.create(
        name="Growth",
        description="Daily",
        widgets=[
            CHART,
            METRIC,
            TextWidget(markdown="*notes*"),
            {"type": "table", "source": {"type": "sql", "query": "SELECT 1"}, "title": "Raw"},
        ],
    )
    assert isinstance(board, Dashboard)
    assert (board.name, board.description) == ("Growth", "Daily")
    assert board.created_at is not None
    assert board.created_at.tzinfo is not None
    chart, metric, text, table = board.widgets
    assert chart == CHART
    assert metric == METRIC
    assert isinstance(text, TextWidget)
    assert text.layout == WidgetLayout(x=0, y=4, w=12, h=4)
    assert text.id is not None
    assert isinstance(table, TableWidget)
    assert table.source == SQLSource(query="SELECT 1")
    assert table.title == "Raw"
    assert board.widget("growth") is chart
    with pytest.raises(KeyError, match="no widget 'nope'"):
        board.widget("nope")
    assert await client.dashboards.get(board.id) == board


async def test_list_is_a_pager(client: AsyncLabric) -> None:
    made = [await client.dashboards.create(name=f"b{i}") for i in range(5)]
    pager = client.dashboards.list(page_size=2)
    first = await pager
    assert isinstance(first, Page)
    assert [d.id for d in first.items] == [made[4].id, made[3].id]
    assert [d.id async for d in client.dashboards.list(page_size=2)] == [d.id for d in made[::-1]]
    assert [d.name async for d in client.dashboards.list(limit=3, page_size=2)] == [
        "b4",
        "b3",
        "b2",
    ]
    pages = [len(p.items) async for p in client.dashboards.list(page_size=2).pages()]
    assert pages == [2, 2, 1]


async def test_update(client: AsyncLabric) -> None:
    board = await client.dashboards.create(name="Old", description="d", widgets=[CHART])
    renamed = await client.dashboards.update(board.id, name="New")
    assert (renamed.name, renamed.description, renamed.widgets) == ("New", "d", [CHART])
    cleared = await client.dashboards.update(board.id, description="")
    assert cleared.description is None
    moved = attrs.evolve(CHART, layout=WidgetLayout(x=4, y=0, w=8, h=6), kind="bar")
    changed = await client.dashboards.update(
        board.id, widgets=[moved, {"type": "text", "markdown": "hi", "id": "note"}]
    )
    assert changed.widgets == [
        moved,
        TextWidget(id="note", markdown="hi", layout=WidgetLayout(x=0, y=6, w=12, h=4)),
    ]
    assert changed.widgets[0].kind == ChartKind.BAR  # type: ignore[union-attr]
    emptied = await client.dashboards.update(board.id, widgets=[])
    assert emptied.widgets == []
    assert await client.dashboards.get(board.id) == emptied


async def test_delete(client: AsyncLabric) -> None:
    board = await client.dashboards.create(name="Doomed")
    await client.dashboards.delete(board.id)
    with pytest.raises(NotFoundError):
        await client.dashboards.get(board.id)
    with pytest.raises(NotFoundError):
        await client.dashboards.delete(board.id)
    with pytest.raises(NotFoundError):
        await client.dashboards.update(board.id, name="x")


async def test_widget_data_of_a_missing_widget(client: AsyncLabric) -> None:
    board = await client.dashboards.create(name="B", widgets=[TextWidget(id="t", markdown="x")])
    with pytest.raises(NotFoundError, match="has no widget gone"):
        await client.dashboards.widget_data(board.id, "gone")
    data = await client.dashboards.widget_data(board.id, "t")
    assert data.markdown == "x"


async def test_validation_errors_list_every_problem(client: AsyncLabric) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.dashboards.create(
            name="Bad",
            widgets=[
                ChartWidget(kind="pie", source=SQLSource(query="SELECT 1")),
                TableWidget(
                    source=SQLSource(query="SELECT 1"), layout=WidgetLayout(x=6, y=0, w=7, h=1)
                ),
                MetricWidget(source=DatasetSource(table="t", limit=0)),
            ],
        )
    assert caught.value.status_code == 422
    assert [p["loc"] for p in caught.value.detail] == [
        ["body", "widgets", 0, "kind"],
        ["body", "widgets", 1, "layout", "w"],
        ["body", "widgets", 2, "source", "limit"],
    ]
    assert [d async for d in client.dashboards.list()] == []


async def test_bad_arguments_fail_before_any_request(client: AsyncLabric) -> None:
    with pytest.raises(ValueError, match="dashboard_id"):
        await client.dashboards.get("")
    with pytest.raises(TypeError, match="a widget must be"):
        await client.dashboards.create(name="x", widgets=["chart"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="sequence of widgets"):
        await client.dashboards.create(name="x", widgets={"type": "text"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="widget_id"):
        await client.dashboards.widget_data("d", "")


async def test_ids_are_quoted_into_the_path(client: AsyncLabric) -> None:
    with pytest.raises(NotFoundError, match="Dashboard a/b not found"):
        await client.dashboards.get("a/b")


async def test_a_read_key_cannot_change_dashboards(
    client: AsyncLabric, server: LocalServer
) -> None:
    board = await client.dashboards.create(name="Shared")
    async with AsyncLabric(server.create_key(["read"]), base_url=server.base_url) as reader:
        assert (await reader.dashboards.get(board.id)).name == "Shared"
        with pytest.raises(PermissionDeniedError):
            await reader.dashboards.create(name="Mine")
        with pytest.raises(PermissionDeniedError):
            await reader.dashboards.update(board.id, name="Mine")
        with pytest.raises(PermissionDeniedError):
            await reader.dashboards.delete(board.id)
    assert (await client.dashboards.get(board.id)).name == "Shared"


async def test_another_organisation_gets_404(client: AsyncLabric, server: LocalServer) -> None:
    board = await client.dashboards.create(name="Ours", widgets=[TextWidget(id="t", markdown="x")])
    other_key = server.create_key(["read", "write"], org="other")
    async with AsyncLabric(other_key, base_url=server.base_url) as other:
        assert [d async for d in other.dashboards.list()] == []
        with pytest.raises(NotFoundError):
            await other.dashboards.get(board.id)
        with pytest.raises(NotFoundError):
            await other.dashboards.update(board.id, name="Theirs")
        with pytest.raises(NotFoundError):
            await other.dashboards.delete(board.id)
        with pytest.raises(NotFoundError):
            await other.dashboards.widget_data(board.id, "t")
    assert await client.dashboards.get(board.id) == board


# -- the models, without a server ----------------------------------------------------------------


def test_widgets_travel_tagged_by_type() -> None:
    assert unstructure(TextWidget(markdown="m"))["type"] == "text"
    wire = unstructure(CHART)
    assert wire["type"] == "chart"
    assert wire["source"] == {
        "type": "sql",
        "query": CHART.source.query,  # type: ignore[union-attr]
        "params": ["wt"],
    }
    assert wire["kind"] == "line"
    assert structure(wire, Widget) == CHART  # type: ignore[arg-type]
    assert unstructure(METRIC)["source"]["type"] == "dataset"
    assert structure(unstructure(METRIC), Widget) == METRIC  # type: ignore[arg-type]


def test_a_widget_type_from_a_newer_server_is_kept_as_sent() -> None:
    sent: dict[str, Any] = {
        "id": "g",
        "type": "gauge",
        "title": "Pressure",
        "layout": {"x": 0, "y": 0, "w": 3, "h": 3},
        "needle": {"min": 0, "max": 10},
    }
    odd_source: dict[str, Any] = {"id": "s", "type": "table", "source": {"type": "stream"}}
    board = structure(
        {"id": "d", "name": "n", "widgets": [sent, odd_source, unstructure(CHART)]}, Dashboard
    )
    gauge, streamed, chart = board.widgets
    assert gauge == UnknownWidget(
        type="gauge",
        data=sent,
        id="g",
        title="Pressure",
        layout=WidgetLayout(x=0, y=0, w=3, h=3),
    )
    assert isinstance(streamed, UnknownWidget)
    assert (streamed.type, streamed.id, streamed.data) == ("table", "s", odd_source)
    assert chart == CHART
    assert unstructure(board)["widgets"][:2] == [sent, odd_source]


def test_a_chart_kind_from_a_newer_server_is_kept() -> None:
    chart = structure(
        {"type": "chart", "kind": "radar", "source": {"type": "sql", "query": "SELECT 1"}}, Widget
    )  # type: ignore[arg-type]
    assert isinstance(chart, ChartWidget)
    assert chart.kind == "radar"


@pytest.mark.parametrize(
    "data",
    [
        {"type": "chart", "source": {"type": "sql", "query": "q"}},  # no kind
        {"type": "chart", "kind": "line", "source": {"type": "sql", "query": "q"}, "extra": 1},
        {"kind": "line"},  # no type
        "chart",
    ],
)
def test_malformed_widgets_are_validation_errors(data: Any) -> None:
    with pytest.raises(APIResponseValidationError):
        structure(data, Widget)  # type: ignore[arg-type]

"""Widget evaluation, through the client, against real dataset rows."""

from __future__ import annotations

import pytest

from labric import AsyncLabric
from labric.errors import BadRequestError
from labric.models import (
    ChartKind,
    ChartWidget,
    Dashboard,
    DatasetSource,
    MetricWidget,
    SQLSource,
    TableWidget,
    TextWidget,
    Widget,
    WidgetData,
    WidgetLayout,
)
from labric.server import LocalServer

from ._support import SAMPLES, Wire

FULL = WidgetLayout(x=0, y=0, w=12, h=4)


async def _evaluate(client: AsyncLabric, widget: Widget) -> WidgetData:
    board = await client.dashboards.create(name="eval", widgets=[widget])
    (stored,) = board.widgets
    assert stored.id is not None
    return await client.dashboards.widget_data(board.id, stored.id)


async def _refusal(client: AsyncLabric, widget: Widget) -> str:
    board = await client.dashboards.create(name="refused", widgets=[widget])
    (stored,) = board.widgets
    assert stored.id is not None
    with pytest.raises(BadRequestError) as caught:
        await client.dashboards.widget_data(board.id, stored.id)
    assert caught.value.status_code == 400
    detail = caught.value.detail
    assert isinstance(detail, str)
    assert detail.startswith(f"Widget {stored.id} cannot be evaluated: ")
    return detail


async def test_line_chart_from_sql(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples,
        ChartWidget(
            kind=ChartKind.LINE,
            layout=FULL,
            x="day",
            y=["mean_od"],
            source=SQLSource(
                query="SELECT day, avg(od600) AS mean_od, count(*) AS n FROM samples "
                "WHERE strain = %s GROUP BY day ORDER BY day",
                params=["wt"],
            ),
        ),
    )
    assert (data.type, data.kind, data.x, data.y) == ("chart", ChartKind.LINE, "day", ["mean_od"])
    assert data.columns == ["day", "mean_od", "n"]
    wild = [s for s in SAMPLES if s["strain"] == "wt"]
    assert data.rows == [[s["day"], s["od600"], 1] for s in sorted(wild, key=lambda s: s["day"])]


async def test_bar_chart_defaults_x_to_the_first_column_and_y_to_the_rest(
    samples: AsyncLabric,
) -> None:
    data = await _evaluate(
        samples,
        ChartWidget(
            kind="bar",
            source=SQLSource(
                query="SELECT strain, max(od600) AS top, min(od600) AS bottom FROM samples "
                "GROUP BY strain ORDER BY strain"
            ),
        ),
    )
    assert (data.kind, data.x, data.y) == (ChartKind.BAR, "strain", ["top", "bottom"])
    expected = []
    for strain in sorted({s["strain"] for s in SAMPLES}):
        values = [s["od600"] for s in SAMPLES if s["strain"] == strain]
        expected.append([strain, max(values), min(values)])
    assert data.rows == expected
    assert next(data.records()) == dict(zip(data.columns, expected[0], strict=True))


async def test_single_column_chart_plots_against_the_row_number(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples, ChartWidget(kind="line", source=SQLSource(query="SELECT od600 FROM samples"))
    )
    assert (data.x, data.y) == (None, ["od600"])
    assert data.series("od600") == [s["od600"] for s in SAMPLES]


async def test_scatter_chart_from_a_dataset_source(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples,
        ChartWidget(
            kind="scatter",
            x="day",
            y=["od600"],
            source=DatasetSource(
                table="samples", columns=["day", "od600"], filters={"strain": "mut"}
            ),
        ),
    )
    assert (data.kind, data.columns) == (ChartKind.SCATTER, ["day", "od600"])
    assert data.rows == [[s["day"], s["od600"]] for s in SAMPLES if s["strain"] == "mut"]


async def test_histogram_bins_on_the_server(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples,
        ChartWidget(
            kind="histogram",
            column="od600",
            bins=4,
            source=SQLSource(query="SELECT name, od600 FROM samples"),
        ),
    )
    assert (data.kind, data.column, data.bins) == (ChartKind.HISTOGRAM, "od600", 4)
    assert (data.columns, data.x, data.y) == (
        ["bin_start", "bin_end", "count"],
        "bin_start",
        ["count"],
    )
    values = [s["od600"] for s in SAMPLES]
    low, high = min(values), max(values)
    width = (high - low) / 4
    assert len(data.rows) == 4
    for index, (start, end, count) in enumerate(data.rows):
        assert start == pytest.approx(low + index * width)
        assert end == pytest.approx(low + (index + 1) * width)
        last = index == 3
        assert count == sum(1 for v in values if start <= v < end or (last and v == end))
    assert sum(row[2] for row in data.rows) == len(values)
    assert data.rows[-1][1] == high  # the maximum lands in the last bin, closed on the right


async def test_histogram_edge_cases(samples: AsyncLabric) -> None:
    constant = await _evaluate(
        samples,
        ChartWidget(kind="histogram", bins=2, source=SQLSource(query="SELECT 5 FROM samples")),
    )
    assert constant.rows == [[4.5, 5.0, 0], [5.0, 5.5, len(SAMPLES)]]
    empty = await _evaluate(
        samples,
        ChartWidget(kind="histogram", source=SQLSource(query="SELECT od600 FROM samples WHERE 0")),
    )
    assert (empty.rows, empty.bins) == ([], 10)
    with_nulls = await _evaluate(
        samples,
        ChartWidget(
            kind="histogram",
            bins=1,
            source=SQLSource(query="SELECT CASE WHEN ok THEN od600 END AS healthy FROM samples"),
        ),
    )
    healthy = [s["od600"] for s in SAMPLES if s["ok"] is True]
    assert with_nulls.column == "healthy"
    assert with_nulls.rows == [[min(healthy), max(healthy), len(healthy)]]  # nulls are skipped


@pytest.mark.parametrize(
    "source",
    [
        SQLSource(query="SELECT strain FROM samples"),
        DatasetSource(table="samples", columns=["strain"]),
        DatasetSource(table="samples", columns=["ok"]),  # booleans are not numbers
    ],
)
async def test_histogram_of_anything_but_numbers_is_refused(
    samples: AsyncLabric, source: SQLSource | DatasetSource
) -> None:
    detail = await _refusal(samples, ChartWidget(kind="histogram", source=source))
    assert "a histogram needs numbers" in detail


async def test_table_from_a_dataset_source_with_order_and_limit(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples,
        TableWidget(
            title="Best three",
            source=DatasetSource(
                table="samples",
                columns=["name", "od600", "ok"],
                order_by="od600",
                descending=True,
                limit=3,
            ),
        ),
    )
    assert (data.type, data.columns) == ("table", ["name", "od600", "ok"])
    best = sorted(SAMPLES, key=lambda s: s["od600"], reverse=True)[:3]
    assert data.rows == [[s["name"], s["od600"], s["ok"]] for s in best]
    assert len(data) == 3


async def test_table_of_every_column_in_insertion_order(samples: AsyncLabric) -> None:
    data = await _evaluate(samples, TableWidget(source=DatasetSource(table="samples")))
    assert data.columns == ["id", "name", "day", "od600", "strain", "ok"]
    assert [row[1:] for row in data.rows] == [list(s.values()) for s in SAMPLES]
    newest = await _evaluate(
        samples, TableWidget(source=DatasetSource(table="samples", descending=True, limit=1))
    )
    assert newest.rows[0][1] == SAMPLES[-1]["name"]


async def test_table_of_a_platform_table(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples, TableWidget(source=DatasetSource(table="experiment", columns=["id", "name"]))
    )
    assert (data.columns, data.rows) == (["id", "name"], [])


async def test_metric(samples: AsyncLabric) -> None:
    data = await _evaluate(
        samples,
        MetricWidget(
            label="Healthy samples",
            unit="samples",
            source=SQLSource(
                query="SELECT count(*) AS n, 'ignored' FROM samples WHERE ok = %s", params=[True]
            ),
        ),
    )
    assert data.type == "metric"
    assert data.value == sum(1 for s in SAMPLES if s["ok"] is True)
    assert (data.columns, data.rows) == (["n"], [[data.value]])
    assert (data.label, data.unit) == ("Healthy samples", "samples")
    first = await _evaluate(
        samples, MetricWidget(source=DatasetSource(table="samples", columns=["od600"]))
    )
    assert first.value == SAMPLES[0]["od600"]
    nothing = await _evaluate(
        samples, MetricWidget(source=SQLSource(query="SELECT od600 FROM samples WHERE 0"))
    )
    assert (nothing.value, nothing.columns, nothing.rows) == (None, ["od600"], [])


async def test_text(client: AsyncLabric) -> None:
    data = await _evaluate(client, TextWidget(markdown="# Growth\n\n*OD600* by day", layout=FULL))
    assert data.type == "text"
    assert data.markdown == "# Growth\n\n*OD600* by day"
    assert (data.columns, data.rows) == ([], [])


async def test_data_follows_the_rows_as_they_change(samples: AsyncLabric) -> None:
    board = await samples.dashboards.create(
        name="live",
        widgets=[MetricWidget(id="n", source=SQLSource(query="SELECT count(*) FROM samples"))],
    )
    assert (await samples.dashboards.widget_data(board.id, "n")).value == len(SAMPLES)
    await samples.datasets.write("samples", [{"name": "s7", "day": 4, "od600": 1.2}])
    assert (await samples.dashboards.widget_data(board.id, "n")).value == len(SAMPLES) + 1


@pytest.mark.parametrize(
    ("widget", "expected"),
    [
        (
            ChartWidget(
                kind="line", x="week", source=SQLSource(query="SELECT day, od600 FROM samples")
            ),
            "x: the column 'week' is not in the result (columns: day, od600)",
        ),
        (
            ChartWidget(
                kind="bar", y=["day", "nope"], source=SQLSource(query="SELECT day FROM samples")
            ),
            "y: the column 'nope'",
        ),
        (
            ChartWidget(kind="bar", x="day", source=SQLSource(query="SELECT day FROM samples")),
            "no column left to plot",
        ),
        (
            ChartWidget(
                kind="histogram", column="x", source=SQLSource(query="SELECT day FROM samples")
            ),
            "column: the column 'x'",
        ),
        (TableWidget(source=DatasetSource(table="nowhere")), "there is no table 'nowhere'"),
        (
            TableWidget(source=DatasetSource(table="samples", columns=["name", "mass"])),
            "columns: samples has no column 'mass'",
        ),
        (
            TableWidget(source=DatasetSource(table="samples", order_by="mass")),
            "order_by: samples has no column 'mass'",
        ),
        (
            TableWidget(source=DatasetSource(table="samples", filters={"mass": 1})),
            "samples has no column 'mass'",
        ),
        (
            TableWidget(source=DatasetSource(table="samples", filters={"day": "soon"})),
            "Filter 'day'",
        ),
        (
            TableWidget(source=SQLSource(query="SELECT * FROM samples WHERE day = %s")),
            "1 %s placeholder(s) but 0 parameter(s)",
        ),
        (
            TableWidget(source=SQLSource(query="SELECT * FROM samples WHERE day = ?", params=[1])),
            "positional %s",
        ),
        (TableWidget(source=SQLSource(query="SELEC 1")), "syntax error"),
        (TableWidget(source=SQLSource(query="DELETE FROM samples")), "only SELECT"),
    ],
)
async def test_sources_that_do_not_fit_the_data_are_400(
    samples: AsyncLabric, widget: Widget, expected: str
) -> None:
    detail = await _refusal(samples, widget)
    assert expected.lower() in detail.lower()
    assert len(await samples.datasets.query("SELECT * FROM samples")) == len(SAMPLES)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT * FROM api_keys", "no such table: api_keys"),
        ("SELECT secret_hash FROM main.api_keys", "no such table: main.api_keys"),
        ("SELECT * FROM files", "no such table: files"),
        ("SELECT * FROM dashboards", "no such table: dashboards"),
        ("SELECT * FROM _labric_tables", "refused"),
        ("SELECT name FROM sqlite_master", "refused"),
        ("ATTACH DATABASE 'x.sqlite3' AS x", "refused"),
        ("PRAGMA table_list", "refused"),
    ],
)
async def test_sql_cannot_reach_the_servers_own_tables(
    client: AsyncLabric, query: str, expected: str
) -> None:
    detail = await _refusal(client, TableWidget(source=SQLSource(query=query)))
    assert expected.lower() in detail.lower()


async def test_sql_cannot_read_another_organisations_table(
    samples: AsyncLabric, server: LocalServer
) -> None:
    other_key = server.create_key(["read", "write"], org="other")
    async with AsyncLabric(other_key, base_url=server.base_url) as other:
        await other.datasets.create("secrets", columns=[{"name": "code", "type": "text"}])
        await other.datasets.write("secrets", [{"code": "s3cr3t"}])
        # The other organisation's own widget reads its table: the table is real.
        theirs = await other.dashboards.create(
            name="theirs",
            widgets=[TableWidget(id="t", source=SQLSource(query="SELECT code FROM secrets"))],
        )
        assert (await other.dashboards.widget_data(theirs.id, "t")).rows == [["s3cr3t"]]
        # ...and cannot read ours, by SQL or as a dataset.
        ours_by_sql = await _refusal(
            other, TableWidget(source=SQLSource(query="SELECT * FROM samples"))
        )
        assert "no such table: samples" in ours_by_sql
        ours_by_name = await _refusal(other, TableWidget(source=DatasetSource(table="samples")))
        assert "there is no table 'samples'" in ours_by_name
    detail = await _refusal(
        samples, TableWidget(source=SQLSource(query="SELECT code FROM secrets"))
    )
    assert "no such table: secrets" in detail
    assert "s3cr3t" not in detail
    by_name = await _refusal(samples, TableWidget(source=DatasetSource(table="secrets")))
    assert "there is no table 'secrets'" in by_name


async def test_results_over_the_row_limit_are_refused_not_truncated(
    samples: AsyncLabric, wire: Wire
) -> None:
    saved = await samples.dashboards.create(
        name="saved earlier",
        widgets=[TableWidget(id="six", source=DatasetSource(table="samples", limit=6))],
    )
    reply = await wire.call("PUT", "/v1/admin/datasets/limits", json={"max_query_rows": 5})
    assert reply.status == 200, reply.body
    by_sql = await _refusal(
        samples, TableWidget(source=SQLSource(query="SELECT name FROM samples"))
    )
    assert "more than 5 rows" in by_sql
    by_table = await _refusal(samples, TableWidget(source=DatasetSource(table="samples")))
    assert "more than 5 matching rows" in by_table
    limited = await _evaluate(samples, TableWidget(source=DatasetSource(table="samples", limit=5)))
    assert len(limited) == 5
    # A widget saved with a higher limit than the server now allows fails rather than shrinks.
    with pytest.raises(BadRequestError, match="more than 5 matching rows"):
        await samples.dashboards.widget_data(saved.id, "six")


async def test_results_over_the_size_limit_are_refused(samples: AsyncLabric, wire: Wire) -> None:
    reply = await wire.call("PUT", "/v1/admin/datasets/limits", json={"max_query_bytes": 40})
    assert reply.status == 200, reply.body
    for source in (
        SQLSource(query="SELECT name, strain FROM samples"),
        DatasetSource(table="samples", columns=["name", "strain"]),
    ):
        detail = await _refusal(samples, TableWidget(source=source))
        assert "larger than 40 bytes" in detail
    one = await _evaluate(
        samples, TableWidget(source=DatasetSource(table="samples", columns=["name"], limit=1))
    )
    assert one.rows == [[SAMPLES[0]["name"]]]


async def test_dataset_sources_order_descending_with_ties_newest_first(
    samples: AsyncLabric,
) -> None:
    data = await _evaluate(
        samples,
        TableWidget(
            source=DatasetSource(
                table="samples", columns=["name", "day"], order_by="day", descending=True
            )
        ),
    )
    expected = sorted(
        ((s["name"], s["day"], i) for i, s in enumerate(SAMPLES)),
        key=lambda t: (t[1], t[2]),
        reverse=True,
    )
    assert data.rows == [[name, day] for name, day, _ in expected]


async def test_a_column_named_twice_by_its_two_names(samples: AsyncLabric) -> None:
    await samples.datasets.create(
        "readings",
        columns=[
            {"name": "sample", "foreign_key": "samples"},
            {"name": "value", "type": "float"},
        ],
    )
    ids = (await samples.datasets.query("SELECT id FROM samples ORDER BY name")).data
    await samples.datasets.write("readings", [{"sample": ids[0][0], "value": 1.5}])
    data = await _evaluate(
        samples,
        TableWidget(
            source=DatasetSource(
                table="readings",
                columns=["sample", "sample_id", "value"],
                filters={"sample__name": SAMPLES[0]["name"]},
            )
        ),
    )
    assert data.columns == ["sample", "sample", "value"]
    assert data.rows == [[ids[0][0], ids[0][0], 1.5]]


async def test_a_read_key_evaluates_widgets(samples: AsyncLabric, server: LocalServer) -> None:
    board: Dashboard = await samples.dashboards.create(
        name="shared",
        widgets=[MetricWidget(id="max", source=SQLSource(query="SELECT max(od600) FROM samples"))],
    )
    async with AsyncLabric(server.create_key(["read"]), base_url=server.base_url) as reader:
        data = await reader.dashboards.widget_data(board.id, "max")
    assert data.value == max(s["od600"] for s in SAMPLES)

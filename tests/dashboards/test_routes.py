"""The dashboards routes on the wire: CRUD, pagination, validation, scopes, organisations."""

from __future__ import annotations

from typing import Any

import pytest

from labric.server.dashboards.store import MAX_WIDGETS

from ._support import LAYOUT, Wire, sql, table_widget


async def test_create_answers_the_stored_dashboard(wire: Wire) -> None:
    reply = await wire.create(
        name="Growth",
        description="OD600 by day",
        widgets=[
            {
                "id": "curve",
                "type": "chart",
                "kind": "line",
                "title": "OD600",
                "layout": {"x": 0, "y": 0, "w": 8, "h": 3},
                "source": sql("SELECT 1 AS day, 0.5 AS od600"),
                "x": "day",
                "y": "od600",
            },
            {"type": "text", "markdown": "# Notes"},
            {
                "type": "chart",
                "kind": "histogram",
                "layout": {"x": 8, "y": 0, "w": 4, "h": 3},
                "source": {"type": "dataset", "table": "samples", "columns": ["od600"]},
            },
            {"type": "metric", "source": sql("SELECT %s", 7), "label": "Seven", "unit": "d"},
        ],
    )
    assert reply.status == 201, reply.body
    board = reply.json()
    assert board["name"] == "Growth"
    assert board["description"] == "OD600 by day"
    assert board["created_at"] == board["updated_at"]
    curve, text, histogram, metric = board["widgets"]
    assert curve == {
        "id": "curve",
        "type": "chart",
        "kind": "line",
        "title": "OD600",
        "layout": {"x": 0, "y": 0, "w": 8, "h": 3},
        "source": {"type": "sql", "query": "SELECT 1 AS day, 0.5 AS od600", "params": []},
        "x": "day",
        "y": ["od600"],  # a single name is a list of one
    }
    # Widgets without a layout go under those before them, full width.
    assert text == {
        "id": text["id"],
        "type": "text",
        "title": None,
        "layout": {"x": 0, "y": 3, "w": 12, "h": 4},
        "markdown": "# Notes",
    }
    assert text["id"].startswith("w_")
    assert histogram["bins"] == 10
    assert histogram["column"] is None
    assert histogram["source"] == {
        "type": "dataset",
        "table": "samples",
        "columns": ["od600"],
        "filters": {},
        "order_by": None,
        "descending": False,
        "limit": None,
    }
    assert metric["layout"] == {"x": 0, "y": 7, "w": 12, "h": 4}
    assert (metric["label"], metric["unit"]) == ("Seven", "d")
    assert len({w["id"] for w in board["widgets"]}) == 4

    got = await wire.call("GET", f"/v1/dashboards/{board['id']}")
    assert got.status == 200
    assert got.json() == board


async def test_list_pages_newest_first_with_link_headers(wire: Wire) -> None:
    ids = [(await wire.created(name=f"board {i}"))["id"] for i in range(5)]
    first = await wire.call("GET", "/v1/dashboards?page_size=2")
    assert first.status == 200
    assert [d["id"] for d in first.json()] == [ids[4], ids[3]]
    seen = [d["id"] for d in first.json()]
    link = first.headers["Link"]
    while link:
        assert link.endswith('>; rel="next"')
        page = await wire.call("GET", link[1 : link.index(">")])
        assert page.status == 200
        assert len(page.json()) <= 2
        seen += [d["id"] for d in page.json()]
        link = page.headers.get("Link", "")
    assert seen == ids[::-1]
    everything = await wire.call("GET", "/v1/dashboards")
    assert "Link" not in everything.headers
    assert [d["id"] for d in everything.json()] == ids[::-1]


@pytest.mark.parametrize(
    ("query", "loc"),
    [("limit=0", ["query", "limit"]), ("limit=x", ["query", "limit"])],
)
async def test_list_rejects_a_bad_limit(wire: Wire, query: str, loc: list[str]) -> None:
    reply = await wire.call("GET", f"/v1/dashboards?{query}")
    assert reply.status == 422
    assert [p["loc"] for p in reply.json()["detail"]] == [loc]


async def test_list_rejects_a_forged_cursor(wire: Wire) -> None:
    reply = await wire.call("GET", "/v1/dashboards?cursor=bm90LWEtY3Vyc29y")
    assert reply.status == 400
    assert "cursor" in reply.json()["detail"]


async def test_patch_changes_only_what_is_sent(wire: Wire) -> None:
    board = await wire.created(
        name="Before", description="old", widgets=[table_widget(id="keep"), table_widget()]
    )
    path = f"/v1/dashboards/{board['id']}"
    renamed = await wire.call("PATCH", path, json={"name": "After", "description": None})
    assert renamed.status == 200
    after = renamed.json()
    assert after["name"] == "After"
    assert after["description"] == "old"  # null counts as not sent
    assert after["widgets"] == board["widgets"]
    assert after["updated_at"] >= board["updated_at"]
    assert after["created_at"] == board["created_at"]

    kept, dropped = board["widgets"]
    replaced = await wire.call(
        "PATCH",
        path,
        json={
            "description": "",
            "widgets": [{"type": "text", "markdown": "new"}, {**kept, "title": "Kept"}],
        },
    )
    assert replaced.status == 200
    body = replaced.json()
    assert body["description"] is None  # "" clears it
    text, table = body["widgets"]
    assert text["markdown"] == "new"
    assert text["id"] not in (kept["id"], dropped["id"])
    assert table == {**kept, "title": "Kept"}
    assert (await wire.call("GET", path)).json() == body


async def test_patch_validates_like_create(wire: Wire) -> None:
    board = await wire.created(name="B", widgets=[table_widget()])
    path = f"/v1/dashboards/{board['id']}"
    reply = await wire.call(
        "PATCH", path, json={"name": " ", "widgets": [{"type": "table", "layout": LAYOUT}]}
    )
    assert reply.status == 422
    assert [p["loc"] for p in reply.json()["detail"]] == [
        ["body", "name"],
        ["body", "widgets", 0, "source"],
    ]
    assert (await wire.call("GET", path)).json() == board


async def test_delete(wire: Wire) -> None:
    board = await wire.created(name="Doomed")
    path = f"/v1/dashboards/{board['id']}"
    reply = await wire.call("DELETE", path)
    assert reply.status == 204
    assert reply.body == b""
    for method in ("GET", "DELETE", "PATCH"):
        gone = await wire.call(method, path, json={} if method == "PATCH" else None)
        assert gone.status == 404
        assert gone.json() == {"detail": f"Dashboard {board['id']} not found"}
    data = await wire.call("GET", f"{path}/widgets/w/data")
    assert data.status == 404


async def test_unknown_widget_is_404(wire: Wire) -> None:
    board = await wire.created(name="B", widgets=[table_widget(id="t")])
    reply = await wire.call("GET", f"/v1/dashboards/{board['id']}/widgets/nope/data")
    assert reply.status == 404
    assert reply.json()["detail"] == f"Dashboard {board['id']} has no widget nope"


def _chart(**fields: Any) -> dict[str, Any]:
    return {
        "type": "chart",
        "kind": "line",
        "layout": dict(LAYOUT),
        "source": sql("SELECT 1"),
        **fields,
    }


@pytest.mark.parametrize(
    ("widget", "loc", "kind"),
    [
        ({"layout": LAYOUT}, ["type"], "missing"),
        ({"type": "gauge"}, ["type"], "enum"),
        (_chart(kind=None), ["kind"], "missing"),
        (_chart(kind="pie"), ["kind"], "enum"),
        (_chart(layout={"x": 8, "y": 0, "w": 6, "h": 2}), ["layout", "w"], "grid_overflow"),
        (_chart(layout={"x": -1, "y": 0, "w": 6, "h": 2}), ["layout", "x"], "greater_than_equal"),
        (_chart(layout={"x": 0, "y": -3, "w": 6, "h": 2}), ["layout", "y"], "greater_than_equal"),
        (_chart(layout={"x": 0, "y": 0, "w": 0, "h": 2}), ["layout", "w"], "greater_than_equal"),
        (_chart(layout={"x": 0, "y": 0, "w": 6, "h": -2}), ["layout", "h"], "greater_than_equal"),
        (_chart(layout={"x": 12, "y": 0, "w": 1, "h": 2}), ["layout", "x"], "less_than_equal"),
        (_chart(layout={"x": 0, "y": 0, "w": 13, "h": 2}), ["layout", "w"], "less_than_equal"),
        (_chart(layout={"x": 0, "y": 0, "w": 2}), ["layout", "h"], "missing"),
        (_chart(layout={"x": 0.5, "y": 0, "w": 2, "h": 1}), ["layout", "x"], "int_type"),
        (_chart(layout=[0, 0, 6, 4]), ["layout"], "dict_type"),
        (_chart(source=None), ["source"], "missing"),
        (_chart(source={"query": "SELECT 1"}), ["source", "type"], "missing"),
        (_chart(source={"type": "graphql"}), ["source", "type"], "enum"),
        (_chart(source={"type": "sql"}), ["source", "query"], "missing"),
        (_chart(source={"type": "sql", "query": "  "}), ["source", "query"], "string_too_short"),
        (_chart(source=sql("SELECT %s", [1])), ["source", "params"], "scalar_type"),
        (
            _chart(source={"type": "sql", "query": "SELECT 1", "params": 1}),
            ["source", "params"],
            "list_type",
        ),
        (_chart(source={"type": "dataset"}), ["source", "table"], "missing"),
        (
            _chart(source={"type": "dataset", "table": "t", "columns": []}),
            ["source", "columns"],
            "too_short",
        ),
        (
            _chart(source={"type": "dataset", "table": "t", "filters": ["a"]}),
            ["source", "filters"],
            "dict_type",
        ),
        (
            _chart(source={"type": "dataset", "table": "t", "limit": 0}),
            ["source", "limit"],
            "greater_than_equal",
        ),
        (
            _chart(source={"type": "dataset", "table": "t", "descending": "yes"}),
            ["source", "descending"],
            "bool_type",
        ),
        (_chart(kind="histogram", bins=0), ["bins"], "greater_than_equal"),
        (_chart(kind="histogram", bins=100_000), ["bins"], "less_than_equal"),
        (_chart(y=[]), ["y"], "too_short"),
        (_chart(y=["a", "a"]), ["y"], "value_error"),
        (_chart(title=5), ["title"], "string_type"),
        (_chart(id="has space"), ["id"], "string_pattern_mismatch"),
        ({"type": "text", "layout": LAYOUT}, ["markdown"], "missing"),
        (
            {"type": "text", "markdown": "x", "source": sql("SELECT 1")},
            ["source"],
            "extra_forbidden",
        ),
        ({"type": "metric", "source": sql("SELECT 1"), "unit": 3}, ["unit"], "string_type"),
    ],
)
async def test_invalid_widgets_are_422(
    wire: Wire, widget: dict[str, Any], loc: list[str], kind: str
) -> None:
    problems = await wire.problems(name="Bad", widgets=[table_widget(), widget])
    assert [(p["loc"], p["type"]) for p in problems] == [(["body", "widgets", 1, *loc], kind)]
    assert all(isinstance(p["msg"], str) and p["msg"] for p in problems)


async def test_every_problem_is_reported_at_once(wire: Wire) -> None:
    problems = await wire.problems(
        description=3,
        widgets=[
            "not a widget",
            table_widget(id="same"),
            table_widget(id="same"),
            _chart(kind="pie", layout={"x": 0, "y": 0, "w": 0, "h": 0}),
        ],
    )
    assert [p["loc"] for p in problems] == [
        ["body", "name"],
        ["body", "description"],
        ["body", "widgets", 0],
        ["body", "widgets", 2, "id"],
        ["body", "widgets", 3, "layout", "w"],
        ["body", "widgets", 3, "layout", "h"],
        ["body", "widgets", 3, "kind"],
    ]
    assert "same" in problems[3]["msg"]
    assert (await wire.call("GET", "/v1/dashboards")).json() == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": ""}, ["body", "name"]),
        ({"name": "x" * 256}, ["body", "name"]),
        ({"name": "B", "widgets": {"type": "text"}}, ["body", "widgets"]),
        ({"name": "B", "widgets": [table_widget()] * (MAX_WIDGETS + 1)}, ["body", "widgets"]),
    ],
)
async def test_invalid_dashboards_are_422(wire: Wire, body: dict[str, Any], loc: list[str]) -> None:
    problems = await wire.problems(**body)
    assert [p["loc"] for p in problems] == [loc]


async def test_a_body_that_is_not_an_object_is_422(wire: Wire) -> None:
    reply = await wire.call("POST", "/v1/dashboards", json=["name"])
    assert reply.status == 422
    assert reply.json()["detail"][0]["loc"] == ["body"]
    broken = await wire.call(
        "POST", "/v1/dashboards", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status == 400


async def test_a_generated_id_never_takes_one_a_later_widget_asks_for(wire: Wire) -> None:
    board = await wire.created(name="B", widgets=[table_widget(), table_widget(id="w_given")])
    first, second = (w["id"] for w in board["widgets"])
    assert second == "w_given"
    assert first != second


async def test_scopes(wire: Wire) -> None:
    board = await wire.created(name="B", widgets=[table_widget(id="t")])
    path = f"/v1/dashboards/{board['id']}"
    reader = wire.server.create_key(["read"])
    assert (await wire.call("GET", "/v1/dashboards", key=reader)).status == 200
    assert (await wire.call("GET", path, key=reader)).status == 200
    data = await wire.call("GET", f"{path}/widgets/t/data", key=reader)
    assert data.status == 200
    assert data.json()["rows"] == [[1]]
    for method, target, body in [
        ("POST", "/v1/dashboards", {"name": "no"}),
        ("PATCH", path, {"name": "no"}),
        ("DELETE", path, None),
    ]:
        refused = await wire.call(method, target, json=body, key=reader)
        assert refused.status == 403
        assert "'write' scope" in refused.json()["detail"]
    assert (await wire.call("GET", path)).json() == board
    anonymous = await wire.session.get(f"{wire.server.base_url}/v1/dashboards")
    assert anonymous.status == 401
    anonymous.release()


async def test_another_organisations_dashboards_are_invisible(wire: Wire) -> None:
    board = await wire.created(name="Ours", widgets=[table_widget(id="t")])
    path = f"/v1/dashboards/{board['id']}"
    other = wire.server.create_key(["read", "write"], org="other")
    assert (await wire.call("GET", "/v1/dashboards", key=other)).json() == []
    for method, target, body in [
        ("GET", path, None),
        ("PATCH", path, {"name": "theirs"}),
        ("DELETE", path, None),
        ("GET", f"{path}/widgets/t/data", None),
    ]:
        reply = await wire.call(method, target, json=body, key=other)
        assert reply.status == 404, (method, target)
    theirs = await wire.create(key=other, name="Theirs")
    assert theirs.status == 201
    assert [d["name"] for d in (await wire.call("GET", "/v1/dashboards")).json()] == ["Ours"]
    assert (await wire.call("GET", path)).json() == board

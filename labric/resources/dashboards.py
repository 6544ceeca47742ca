"""``client.dashboards``: widgets over an organisation's data, on a grid (local-server routes)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from labric._core.converter import unstructure
from labric._core.pagination import AsyncPager
from labric._core.urls import path_segment
from labric.errors import APIStatusError
from labric.models.dashboards import Dashboard, TextWidget, UnknownWidget, Widget, WidgetData
from labric.resources import _render
from labric.resources._base import AsyncResource

__all__ = ["AsyncDashboards"]

WidgetsType = Sequence[Widget | Mapping[str, Any]]


def _segment(value: str, what: str) -> str:
    return path_segment(value, what)


def _widgets(items: WidgetsType) -> list[Any]:
    if isinstance(items, str | bytes | Mapping):
        raise TypeError("widgets must be a sequence of widgets")
    out = []
    for item in items:
        if attrs.has(type(item)):
            out.append(unstructure(item))
        elif isinstance(item, Mapping):
            out.append(dict(item))
        else:
            raise TypeError(f"a widget must be a widget model or a dict, not {type(item).__name__}")
    return out


class AsyncDashboards(AsyncResource):
    """Dashboards: charts, tables, metrics and text laid out on a 12-column grid.

    Widgets are :class:`~labric.models.ChartWidget`, :class:`~labric.models.TableWidget`,
    :class:`~labric.models.MetricWidget` and :class:`~labric.models.TextWidget` models, or dicts
    of the same fields with a ``type``. Their data comes from read-only SQL
    (:class:`~labric.models.SQLSource`, under the same rules as ``datasets.query``) or from one
    table's rows (:class:`~labric.models.DatasetSource`), and is computed on the server when
    :meth:`widget_data` asks for it.
    """

    def list(
        self, *, limit: int | None = None, page_size: int | None = None
    ) -> AsyncPager[Dashboard]:
        """List dashboards, newest first.

        Args:
            limit: The most dashboards to yield in total.
            page_size: Dashboards fetched per request (100 when unset; the server may cap it).

        Returns:
            A pager: ``await`` it for the first page, ``async for`` over it for every dashboard.
        """
        return self._pager("/v1/dashboards", Dashboard, limit=limit, page_size=page_size)

    async def get(self, dashboard_id: str) -> Dashboard:
        """Get one dashboard with its widgets.

        Raises:
            NotFoundError: no such dashboard in the key's organisation.
        """
        response = await self._transport.request(
            "GET", f"/v1/dashboards/{_segment(dashboard_id, 'dashboard_id')}"
        )
        return self._parse(response, Dashboard)

    async def create(
        self,
        *,
        name: str,
        description: str | None = None,
        widgets: WidgetsType = (),
    ) -> Dashboard:
        """Create a dashboard.

        Args:
            name: Its name.
            description: Free text.
            widgets: The widgets, in order. A widget without an ``id`` gets one from the server;
                one without a ``layout`` is placed, full width, under those before it.

        Returns:
            The dashboard as stored (ids and layouts filled in).

        Raises:
            UnprocessableEntityError: a field or widget is invalid (``detail`` lists every
                problem, located as ``["body", "widgets", index, ...]``).

        Example::

            from labric.models import ChartWidget, SQLSource, WidgetLayout

            board = await client.dashboards.create(name="Growth", widgets=[
                ChartWidget(
                    kind="scatter", x="od600", y=["count"],
                    layout=WidgetLayout(x=0, y=0, w=6, h=4),
                    source=SQLSource(query="SELECT od600, count FROM samples"),
                ),
                {"type": "text", "markdown": "# Notes"},
            ])
        """
        body: dict[str, Any] = {"name": name, "widgets": _widgets(widgets)}
        if description is not None:
            body["description"] = description
        response = await self._transport.request("POST", "/v1/dashboards", json=body)
        return self._parse(response, Dashboard)

    async def update(
        self,
        dashboard_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        widgets: WidgetsType | None = None,
    ) -> Dashboard:
        """Change a dashboard's name, description or widgets (only what is given changes).

        Args:
            dashboard_id: The dashboard.
            name: A new name.
            description: A new description (``""`` clears it).
            widgets: The new list of widgets, replacing the old one as a whole; widgets keep the
                ids they are given, so pass ``board.widgets`` (changed as needed) to keep them.

        Raises:
            NotFoundError: no such dashboard in the key's organisation.
            UnprocessableEntityError: a field or widget is invalid.
        """
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        if widgets is not None:
            body["widgets"] = _widgets(widgets)
        response = await self._transport.request(
            "PATCH", f"/v1/dashboards/{_segment(dashboard_id, 'dashboard_id')}", json=body
        )
        return self._parse(response, Dashboard)

    async def delete(self, dashboard_id: str) -> None:
        """Delete a dashboard.

        Safe to retry: if an earlier attempt's outcome was unknown (a 5xx, a timeout, a lost
        connection) and a retry finds the dashboard gone, that attempt deleted it and the call
        succeeds.

        Raises:
            NotFoundError: no such dashboard in the key's organisation (found missing by the first
                attempt).
        """
        await self._transport.request(
            "DELETE", f"/v1/dashboards/{_segment(dashboard_id, 'dashboard_id')}"
        )

    async def widget_data(self, dashboard_id: str, widget_id: str) -> WidgetData:
        """Evaluate one widget on the server: its columns and rows, and what its type adds.

        A chart's answer names its ``x`` and ``y`` columns (a histogram's rows are the bins:
        ``bin_start``, ``bin_end``, ``count``); a metric's carries its ``value``; a text
        widget's its ``markdown``.

        Raises:
            NotFoundError: no such dashboard, or no such widget on it.
            BadRequestError: the widget's source cannot be evaluated (its SQL is refused or
                fails, it names a table or column that does not exist, or a histogram's column
                holds something other than numbers); the message names the widget.
        """
        response = await self._transport.request(
            "GET",
            f"/v1/dashboards/{_segment(dashboard_id, 'dashboard_id')}"
            f"/widgets/{_segment(widget_id, 'widget_id')}/data",
        )
        return self._parse(response, WidgetData)

    async def render(
        self, dashboard_id: str, path: str | os.PathLike[str], *, dpi: int = 100
    ) -> Path:
        """Draw a dashboard to a PNG file with matplotlib, to look at it from a script.

        Every widget is evaluated on the server (as :meth:`widget_data` does) and drawn in its
        place on the grid; a widget whose data cannot be computed shows the server's reason in
        its cell rather than failing the drawing. matplotlib is needed only for this method
        (``pip install 'labric[plot]'``).

        Args:
            dashboard_id: The dashboard.
            path: The PNG file to write (replaced if it exists).
            dpi: Pixels per inch; the image is 12 inches wide (one per grid column).

        Returns:
            The path written.

        Raises:
            ImportError: matplotlib is not installed (the message says what to install).
            NotFoundError: no such dashboard in the key's organisation.
        """
        _render.require()
        if dpi < 10:
            raise ValueError("dpi must be at least 10")
        board = await self.get(dashboard_id)

        async def evaluate(widget_id: str) -> WidgetData | str:
            try:
                return await self.widget_data(board.id, widget_id)
            except APIStatusError as exc:
                return str(exc.detail or exc)

        wanted = [
            w.id
            for w in board.widgets
            if w.id is not None and not isinstance(w, TextWidget | UnknownWidget)
        ]
        results = await asyncio.gather(*(evaluate(widget_id) for widget_id in wanted))
        target = Path(path)
        await asyncio.to_thread(
            _render.draw, board, dict(zip(wanted, results, strict=True)), target, dpi=dpi
        )
        return target

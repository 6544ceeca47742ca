"""The generator: the facade on disk is fresh, and every supported shape is mirrored."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labric._blocking.generate import ROOT, GenerationError, Layout, check, generate, write

CLIENT = '''
"""The async client."""

from __future__ import annotations

from types import TracebackType

from labric.resources.widgets import AsyncSpecialWidgets, AsyncWidgets


class AsyncLabric:
    """An asynchronous client.

    Use it as an async context manager (or call :meth:`aclose`)::

        async with AsyncLabric() as client:
            async for w in client.widgets.list():
                print(await client.widgets.get(w.id))
    """

    def __init__(self, api_key: str | None = None, *, retries: int = 2) -> None:
        self.widgets = AsyncWidgets(None)
        self.special = AsyncSpecialWidgets(None)

    def __repr__(self) -> str:
        return "<AsyncLabric>"

    @property
    def name(self) -> str:
        """Its name."""
        return "x"

    async def ping(self) -> bool:
        """Ping the API."""
        return True

    async def aclose(self) -> None:
        """Close it."""

    async def __aenter__(self) -> AsyncLabric:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
'''

BASE = """
class AsyncResource:
    def __init__(self, transport: object) -> None:
        self._transport = transport
"""

WIDGETS = '''
"""``client.widgets``: widgets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, overload

from labric._core.eventstream import AsyncEventStream
from labric._core.pagination import AsyncPager
from labric.resources._base import AsyncResource

if TYPE_CHECKING:
    from labric.models.widgets import Event, Lock, Run, Widget

DEFAULT_EXPAND = False


class AsyncParts(AsyncResource):
    """Parts of widgets."""

    async def count(self) -> int:
        """Count them."""
        return 0


class AsyncWidgets(AsyncResource):
    """Widgets."""

    def __init__(self, transport: object) -> None:
        super().__init__(transport)
        self.parts = AsyncParts(transport)

    def list(self, *, limit: int | None = None) -> AsyncPager[Widget]:
        """List widgets: ``await`` it for the first page, ``async for`` over it for all."""
        raise NotImplementedError

    def watch(self, widget_id: str) -> AsyncEventStream[Event]:
        """Watch one: ``async with client.widgets.watch(id) as events: async for e in events``."""
        raise NotImplementedError

    async def get(self, widget_id: str, /, *, expand: bool = DEFAULT_EXPAND) -> Widget:
        """Get one (``await client.widgets.get(id)``)."""
        raise NotImplementedError

    async def batch(self, *ids: str, **options: Any) -> list[Widget]:
        raise NotImplementedError

    @asynccontextmanager
    async def track(self, name: str) -> AsyncIterator[Run]:
        """Track a run: ``async with client.widgets.track("x") as run:``."""
        yield None  # type: ignore[misc]

    def lock(self, widget_id: str) -> AbstractAsyncContextManager[Lock]:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        return "widget"

    def url_for(self, widget_id: str) -> str:
        return widget_id

    @overload
    async def find(self, key: int) -> Widget: ...
    @overload
    async def find(self, key: str) -> Widget | None: ...
    async def find(self, key: int | str) -> Widget | None:
        """Find one."""
        raise NotImplementedError

    async def _private(self) -> None:
        raise NotImplementedError


class AsyncSpecialWidgets(AsyncWidgets):
    """Special widgets."""

    async def polish(self, widget_id: str) -> None:
        """Polish one."""


class AsyncHelper:
    """Not a resource: not mirrored."""

    async def help(self) -> None: ...
'''


def make_tree(root: Path, widgets: str = WIDGETS) -> Layout:
    """A source tree shaped like the package: a client and a resources module."""
    (root / "labric" / "resources").mkdir(parents=True)
    (root / "labric" / "_client.py").write_text(textwrap.dedent(CLIENT))
    (root / "labric" / "resources" / "_base.py").write_text(BASE)
    (root / "labric" / "resources" / "widgets.py").write_text(textwrap.dedent(widgets))
    return Layout(root)


def squash(text: str) -> str:
    return " ".join(text.split()).replace("( ", "(").replace(" )", ")").replace(",)", ")")


def test_the_facade_on_disk_is_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "labric._blocking.generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_reports_differences() -> None:
    layout = Layout()
    files = generate(layout)
    assert check(layout, files) == ""
    path = layout.output_dir / "files.py"
    files[path] = files[path].replace("def get(", "def fetch(")
    diff = check(layout, files)
    assert "+    def fetch(" in diff
    assert "labric/_sync/files.py" in diff


def test_every_supported_shape_is_mirrored(tmp_path: Path) -> None:
    layout = make_tree(tmp_path)
    files = generate(layout)
    assert sorted(p.name for p in files) == ["__init__.py", "_client.py", "widgets.py"]
    for path, text in files.items():
        compile(text, str(path), "exec")
        assert text.startswith("# Generated by labric/_blocking/generate.py from ")
    widgets = squash(files[layout.output_dir / "widgets.py"])
    client = squash(files[layout.output_dir / "_client.py"])

    expected = [
        "class Parts(SyncResource[AsyncLabric, AsyncParts]):",
        "def count(self) -> int:",
        "return self._portal.call(lambda c: self._get(c).count())",
        "class Widgets(SyncResource[AsyncLabric, AsyncWidgets]):",
        "self.parts = Parts(portal, lambda c: get(c).parts)",
        "def list(self, *, limit: int | None = None) -> SyncPager[Widget]:",
        "call ``first_page()`` for the first page, iterate over it for all.",
        "return SyncPager(self._portal, lambda c: self._get(c).list(limit=limit))",
        "def watch(self, widget_id: str) -> SyncEventStream[Event]:",
        "``with client.widgets.watch(id) as events: for e in events``",
        "return SyncEventStream(self._portal, lambda c: self._get(c).watch(widget_id))",
        "def get(self, widget_id: str, /, *, expand: bool = DEFAULT_EXPAND) -> Widget:",
        "(``client.widgets.get(id)``)",
        "lambda c: self._get(c).get(widget_id, expand=expand)",
        "def batch(self, *ids: str, **options: Any) -> list[Widget]:",
        "lambda c: self._get(c).batch(*ids, **options)",
        "def track(self, name: str) -> AbstractContextManager[Run]:",
        '``with client.widgets.track("x") as run:``',
        "return self._portal.wrap_context(lambda c: self._get(c).track(name))",
        "def lock(self, widget_id: str) -> AbstractContextManager[Lock]:",
        "@property def kind(self) -> str: return self._get(self._portal.client).kind",
        "return self._portal.call_sync(lambda c: self._get(c).url_for(widget_id))",
        "@overload def find(self, key: int) -> Widget: ...",
        "@overload def find(self, key: str) -> Widget | None: ...",
        "def find(self, key: int | str) -> Widget | None:",
        "class SpecialWidgets(SyncResource[AsyncLabric, AsyncSpecialWidgets]):",
        "def polish(self, widget_id: str) -> None:",
        "self._portal.call(lambda c: self._get(c).polish(widget_id))",
        "from labric.resources.widgets import DEFAULT_EXPAND",
        "if TYPE_CHECKING: from labric.models.widgets import Event, Lock, Run, Widget",
        "from labric._blocking.stream import SyncEventStream",
    ]
    for fragment in expected:
        assert fragment in widgets, fragment
    assert "_private" not in widgets
    assert "Helper" not in widgets
    # The subclass mirrors what it inherits, own methods first.
    special = widgets[widgets.index("class SpecialWidgets") :]
    assert special.index("def polish") < special.index("def get(")
    assert "self.parts = Parts(portal, lambda c: get(c).parts)" in special

    for fragment in [
        "def __init__(self, api_key: str | None = None, *, retries: int = 2) -> None:",
        "lambda: AsyncLabric(api_key, retries=retries)",
        "self.widgets = Widgets(self._portal, lambda c: c.widgets)",
        "self.special = SpecialWidgets(self._portal, lambda c: c.special)",
        "Use it as a context manager (or call :meth:`close`):: with Labric() as client: "
        "for w in client.widgets.list(): print(client.widgets.get(w.id))",
        "def ping(self) -> bool:",
        "return self._portal.call(lambda c: c.ping())",
        "@property def name(self) -> str:",
        "def close(self) -> None:",
        "def __enter__(self) -> Labric:",
        "def __exit__(self, exc_type: type[BaseException] | None,",
    ]:
        assert fragment in client, fragment
    assert "aclose" not in client


def test_async_generator_methods_are_refused(tmp_path: Path) -> None:
    source = WIDGETS.replace(
        "    async def _private(self) -> None:",
        "    async def stream(self) -> AsyncIterator[int]:\n        yield 1\n\n"
        "    async def _private(self) -> None:",
    )
    layout = make_tree(tmp_path, source)
    with pytest.raises(GenerationError, match="per item"):
        generate(layout)


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    layout = make_tree(tmp_path, WIDGETS.replace("-> int:", "-> Mystery:"))
    with pytest.raises(GenerationError, match="Mystery"):
        generate(layout)


def test_write_then_check_then_stale_files(tmp_path: Path) -> None:
    layout = make_tree(tmp_path)
    assert check(layout) != ""  # nothing written yet
    written = write(layout)
    assert {p.name for p in written} == {"__init__.py", "_client.py", "widgets.py"}
    assert check(layout) == ""
    assert write(layout) == []
    stale = layout.output_dir / "gadgets.py"
    stale.write_text(
        "# Generated by labric/_blocking/generate.py from labric/resources/gadgets.py\n"
    )
    assert "stale generated file: labric/_sync/gadgets.py" in check(layout)
    assert write(layout) == [stale]
    assert not stale.exists()

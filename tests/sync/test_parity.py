"""Every public async method has a sync twin with the same signature (modulo Async -> sync names).

The async classes are found by importing ``labric.resources`` (not by the generator's reading of
the source), so a class or method the generator missed fails here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import labric._sync
import labric.resources
from labric import AsyncLabric, Labric
from labric.resources._base import AsyncResource

from ._support import KEY


def async_resource_classes() -> list[type[AsyncResource]]:
    found = []
    for info in pkgutil.iter_modules(labric.resources.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"labric.resources.{info.name}")
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, AsyncResource)
                and obj is not AsyncResource
                and obj.__module__ == module.__name__
            ):
                found.append(obj)
    return found


RESOURCES = async_resource_classes()
RENAMES = {
    "AsyncLabric": "Labric",
    "AsyncPager": "SyncPager",
    "AsyncEventStream": "SyncEventStream",
    "AbstractAsyncContextManager": "AbstractContextManager",
    **{cls.__name__: cls.__name__.removeprefix("Async") for cls in RESOURCES},
}
_PATTERN = re.compile(r"\b(" + "|".join(sorted(RENAMES, key=len, reverse=True)) + r")\b")


def rename(annotation: Any) -> Any:
    if isinstance(annotation, str):
        return _PATTERN.sub(lambda m: RENAMES[m.group(1)], annotation)
    return annotation


def public_methods(cls: type) -> Iterator[tuple[str, Any]]:
    """Public functions and properties defined by ``cls`` or a resource class it derives from."""
    for klass in cls.__mro__:
        if klass in (object, AsyncResource):
            continue
        for name, member in vars(klass).items():
            if not name.startswith("_") and (
                inspect.isfunction(member) or isinstance(member, property)
            ):
                yield name, member


def expected_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """The sync twin's signature, derived from the async method's."""
    sig = inspect.signature(fn)
    ret = sig.return_annotation
    if inspect.isasyncgenfunction(inspect.unwrap(fn)) and not inspect.isasyncgenfunction(fn):
        # @asynccontextmanager: AsyncIterator[T] -> AbstractContextManager[T]
        ret = re.sub(
            r"^(?:\w+\.)*Async(?:Iterator|Generator)\[(.*?)(?:, None)?\]$",
            r"AbstractContextManager[\1]",
            ret,
        )
    params = [
        p.replace(annotation=rename(p.annotation), default=p.default)
        for p in sig.parameters.values()
    ]
    return sig.replace(parameters=params, return_annotation=rename(ret))


def sync_twin(cls: type) -> type:
    twin = getattr(labric._sync, cls.__name__.removeprefix("Async"), None)
    assert twin is not None, f"no sync twin for {cls.__name__}"
    return twin


def test_resources_were_found() -> None:
    names = {cls.__name__ for cls in RESOURCES}
    assert {"AsyncFiles", "AsyncJobs", "AsyncJobExecutions"} <= names


@pytest.mark.parametrize("cls", RESOURCES, ids=lambda c: c.__name__)
def test_resource_methods_match(cls: type) -> None:
    twin = sync_twin(cls)
    async_methods = dict(public_methods(cls))
    sync_methods = {n: m for n, m in vars(twin).items() if not n.startswith("_")}
    assert set(async_methods) <= set(sync_methods), "sync twin lacks methods"
    assert set(sync_methods) - set(async_methods) == set(), "sync twin has extra methods"
    for name, member in async_methods.items():
        mine = sync_methods[name]
        if isinstance(member, property):
            assert isinstance(mine, property), name
            member, mine = member.fget, mine.fget
        assert not inspect.iscoroutinefunction(mine), name
        assert inspect.signature(mine) == expected_signature(member), name
        assert (mine.__doc__ is None) == (member.__doc__ is None), name


def test_client_matches() -> None:
    assert inspect.signature(Labric.__init__) == expected_signature(AsyncLabric.__init__)
    pairs = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}
    for sync_name, async_name in pairs.items():
        expected = expected_signature(getattr(AsyncLabric, async_name))
        assert inspect.signature(getattr(Labric, sync_name)) == expected, sync_name
    for name, member in public_methods(AsyncLabric):
        if name == "aclose":
            continue
        mine = getattr(Labric, name)
        if isinstance(member, property):
            member, mine = member.fget, mine.fget
        assert inspect.signature(mine) == expected_signature(member), name
    assert not hasattr(Labric, "aclose")


def test_resource_attributes_match() -> None:
    """The client's resources, nested ones included, are the sync twins of the async ones."""

    def walk(async_obj: object, sync_obj: object, path: str) -> Iterator[str]:
        for name, value in vars(async_obj).items():
            if isinstance(value, AsyncResource):
                twin = getattr(sync_obj, name, None)
                assert type(twin) is sync_twin(type(value)), f"{path}.{name}"
                yield f"{path}.{name}"
                yield from walk(value, twin, f"{path}.{name}")

    async_client = AsyncLabric(KEY, base_url="http://127.0.0.1:9/api")
    with Labric(KEY, base_url="http://127.0.0.1:9/api") as client:
        seen = list(walk(async_client, client, "client"))
    assert "client.files" in seen
    assert "client.jobs.executions" in seen

"""The one cattrs converter: every model is (un)structured here, and nowhere else.

All hooks are registered in :func:`make_converter`, so the whole wire mapping is visible in one
function. Models themselves carry no serialization code.

* Datetimes travel as ISO 8601 strings (``Z`` or an offset). A naive datetime is taken as UTC
  both ways, so every datetime the SDK returns is timezone-aware and comparable.
* Open enums (:class:`labric.models.OpenEnum` subclasses in a ``Enum | str`` union) keep unknown
  values as plain strings, so a newer server never breaks an older client.
* Unknown response fields are ignored in production and rejected when strict mode is on (the test
  suite sets ``LABRIC_STRICT_MODELS=1``), so a model that drifts from the server shows up.
* Dashboard widgets and their sources are unions told apart by a ``type`` field, added on the
  way out and read on the way in; a widget of a type this release does not know (or with a source
  it does not know) becomes :class:`labric.models.UnknownWidget`, kept as sent.
* A body that does not fit its model raises :class:`labric.errors.APIResponseValidationError` with a
  readable list of the problems (``cattrs.transform_error``).
"""

from __future__ import annotations

import enum
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.v
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from labric.errors import APIResponseValidationError
from labric.models._base import OpenEnum
from labric.models.dashboards import (
    ChartWidget,
    DatasetSource,
    MetricWidget,
    SQLSource,
    TableWidget,
    TextWidget,
    UnknownWidget,
    Widget,
    WidgetLayout,
    WidgetSource,
)

__all__ = ["converter", "make_converter", "structure", "unstructure"]

T = TypeVar("T")


def _parse_datetime(value: Any, _type: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parsed = datetime.fromtimestamp(value, tz=UTC)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 datetime: {_preview(value)}") from None
    else:
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _open_enum_member(tp: Any) -> type[OpenEnum] | None:
    """Return the OpenEnum class of a ``SomeEnum | str`` (optionally ``| None``) union."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    enums = [a for a in args if isinstance(a, type) and issubclass(a, OpenEnum)]
    if len(enums) == 1 and len(args) == 2 and str in args:
        return enums[0]
    return None


_WIDGETS: dict[str, type[Any]] = {
    cls.type: cls for cls in (ChartWidget, TableWidget, MetricWidget, TextWidget)
}
_SOURCES: dict[str, type[Any]] = {cls.type: cls for cls in (SQLSource, DatasetSource)}


def _configure_tagged_unions(conv: cattrs.Converter, strict: bool) -> None:
    """Hooks for the unions told apart by ``type``: dashboard widgets and their sources."""
    for cls in (*_WIDGETS.values(), *_SOURCES.values()):
        inner = make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=strict)
        outer = make_dict_unstructure_fn(cls, conv)

        def structure_tagged(value: Any, tp: Any, inner: Any = inner) -> Any:
            if isinstance(value, Mapping) and "type" in value:
                if value["type"] != tp.type:
                    raise ValueError(f"type is {value['type']!r}, not {tp.type!r}")
                value = {k: v for k, v in value.items() if k != "type"}
            return inner(value, tp)

        def unstructure_tagged(obj: Any, outer: Any = outer) -> dict[str, Any]:
            return {"type": obj.type, **outer(obj)}

        conv.register_structure_hook(cls, structure_tagged)
        conv.register_unstructure_hook(cls, unstructure_tagged)

    def tag(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        if not isinstance(value.get("type"), str):
            raise TypeError("expected a string 'type'")
        return value["type"]

    def structure_source(value: Any, _tp: Any) -> Any:
        cls = _SOURCES.get(tag(value))
        if cls is None:
            raise ValueError(f"unknown source type {value['type']!r}")
        return conv.structure(value, cls)

    def structure_widget(value: Any, _tp: Any) -> Any:
        cls = _WIDGETS.get(tag(value))
        source = value.get("source")
        if cls is None or (isinstance(source, Mapping) and source.get("type") not in _SOURCES):
            return structure_unknown(value, UnknownWidget)
        return conv.structure(value, cls)

    def structure_unknown(value: Any, _tp: Any) -> UnknownWidget:
        layout = value.get("layout")
        try:
            placed = None if layout is None else conv.structure(layout, WidgetLayout)
        except Exception:  # a layout this release cannot read is kept in data only
            placed = None
        widget_id, title = value.get("id"), value.get("title")
        return UnknownWidget(
            type=tag(value),
            data=dict(value),
            id=widget_id if isinstance(widget_id, str) else None,
            title=title if isinstance(title, str) else None,
            layout=placed,
        )

    conv.register_structure_hook_func(lambda tp: tp == WidgetSource, structure_source)
    conv.register_structure_hook_func(lambda tp: tp == Widget, structure_widget)
    conv.register_structure_hook(UnknownWidget, structure_unknown)
    conv.register_unstructure_hook(UnknownWidget, lambda obj: dict(obj.data))


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # an id sent as a number is still that id
    raise TypeError(f"expected a string, got {_json_name(value)}")


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected a boolean, got {_json_name(value)}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)  # a float (a hosted size in kilobytes, say) keeps its whole part
    raise TypeError(f"expected an integer, got {_json_name(value)}")


def make_converter(*, strict: bool = False) -> cattrs.Converter:
    """Build the SDK's converter.

    Args:
        strict: Reject unknown fields in structured payloads (used by the test suite).
    """
    conv = cattrs.Converter(forbid_extra_keys=strict)

    conv.register_structure_hook(datetime, _parse_datetime)
    conv.register_unstructure_hook(datetime, _format_datetime)
    # cattrs' own hooks call str(), bool() and int() on whatever arrives, so an object sent for an
    # id became the text "{'x': 1}", the string "false" became True and true a size of 1.
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(int, _structure_int)

    def structure_open_enum(value: Any, tp: Any) -> Any:
        if value is None:
            if type(None) in typing.get_args(tp):
                return None
            raise TypeError("value is required")
        enum_cls = _open_enum_member(tp)
        assert enum_cls is not None  # guaranteed by the predicate
        try:
            return enum_cls(value)
        except ValueError:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__}") from None
            return value

    conv.register_structure_hook_func(
        lambda tp: _open_enum_member(tp) is not None, structure_open_enum
    )
    conv.register_unstructure_hook_func(
        lambda tp: isinstance(tp, type) and issubclass(tp, enum.Enum), lambda e: e.value
    )
    conv.register_unstructure_hook_func(
        lambda tp: _open_enum_member(tp) is not None,
        lambda v: v.value if isinstance(v, enum.Enum) else v,
    )

    # Generated (not reflective) hooks for every attrs class: fast, and strict when asked.
    conv.register_unstructure_hook_factory(
        lambda tp: hasattr(tp, "__attrs_attrs__"),
        lambda tp: make_dict_unstructure_fn(tp, conv),
    )
    conv.register_structure_hook_factory(
        lambda tp: hasattr(tp, "__attrs_attrs__"),
        lambda tp: make_dict_structure_fn(tp, conv, _cattrs_forbid_extra_keys=strict),
    )
    _configure_tagged_unions(conv, strict)
    return conv


converter = make_converter(strict=os.environ.get("LABRIC_STRICT_MODELS") == "1")


def _format_exception(exc: BaseException, tp: type | None) -> str:
    """cattrs' wording, plus what a conversion itself said (``not an ISO 8601 datetime: 'x'``)."""
    text = cattrs.v.format_exception(exc, tp)
    if type(exc) in (ValueError, TypeError) and str(exc) and "expected" in text:
        text = f"{text} ({str(exc)[:120]})"
    return _MODULE_PREFIX.sub("", text)


_MODULE_PREFIX = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])")


def _type_name(cls: Any) -> str:
    if typing.get_origin(cls) is not None:
        return _MODULE_PREFIX.sub("", str(cls))
    return getattr(cls, "__name__", str(cls))


def _json_kind(cls: Any) -> tuple[type | tuple[type, ...], str] | None:
    """The JSON container a type needs at the top level (object or array), if any."""
    origin = typing.get_origin(cls) or cls
    if attrs.has(origin) or origin in (dict, typing.Mapping, Mapping):
        return (dict, "object")
    if origin in (list, tuple, Sequence, typing.Sequence):
        return (list, "array")
    return None


def _json_name(data: Any) -> str:
    if data is None:
        return "null (an empty body)"
    kinds: dict[type, str] = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return kinds.get(type(data), f"a {type(data).__name__}")


def structure(data: Any, cls: type[T], *, what: str | None = None) -> T:
    """Structure ``data`` into ``cls``, raising a readable validation error on a mismatch.

    Args:
        data: Decoded JSON.
        cls: The model class (or a ``list[Model]`` type).
        what: A short description for the error message, e.g. ``"GET /v1/files"``.
    """
    name = _type_name(cls)
    where = f" from {what}" if what else ""
    expected = _json_kind(cls)
    if expected is not None and not isinstance(data, expected[0]):
        raise APIResponseValidationError(
            f"Response{where} does not fit {name}: expected a JSON {expected[1]}, "
            f"got {_json_name(data)}"
        )
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        problems = (
            "; ".join(cattrs.transform_error(exc, format_exception=_format_exception))
            if isinstance(exc, cattrs.BaseValidationError)
            else f"{type(exc).__name__}: {exc}"
        )
        raise APIResponseValidationError(
            f"Response{where} does not fit {name}: {problems}"
        ) from exc


def unstructure(obj: Any) -> Any:
    """Unstructure a model (or a container of models) into JSON-ready data."""
    return converter.unstructure(obj)

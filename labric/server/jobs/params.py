"""A job's parameter definitions, and the parameters one run gets.

Definitions follow the hosted ParameterDefinitionSchema: ``widget_type`` (``combobox``, ``date``,
``slider``, ``text``, ``region``) and ``parameter_name`` are required; ``label``,
``model_source``, ``min``, ``max``, ``step``, ``file_id``, ``file_id_parameter``, ``required`` and
``default`` are optional. They are stored with every key present (``null`` when unset), which is
also how they are answered.

A run's parameters are the values it was given, plus each definition's ``default`` for the ones
it left out (trigger runs included). A manual run must cover every ``required`` definition, by a
value or a default. Values are checked against their widget: text and combobox take strings, date
an ISO 8601 string, slider a number within ``min``..``max``, region an object of the numbers
``x0``, ``y0``, ``x1``, ``y1``. When a job defines parameters, names it does not define are
refused; a job without definitions takes any JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["WIDGETS", "resolve_parameters", "validate_definitions"]

WIDGETS = ("combobox", "date", "slider", "text", "region")
_FIELDS = (
    "widget_type",
    "parameter_name",
    "label",
    "model_source",
    "min",
    "max",
    "step",
    "file_id",
    "file_id_parameter",
    "required",
    "default",
)
_STRINGS = ("label", "model_source", "file_id", "file_id_parameter")
_NUMBERS = ("min", "max", "step")

#: ``(location, message)`` of one validation problem.
Problem = tuple[list[str | int], str]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_value(definition: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` does not fit the definition's widget, or ``None`` when it does."""
    widget = definition["widget_type"]
    if widget in ("text", "combobox"):
        return None if isinstance(value, str) else "Expected a string"
    if widget == "date":
        if not isinstance(value, str):
            return "Expected an ISO 8601 date or timestamp string"
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return "Expected an ISO 8601 date or timestamp string"
        return None
    if widget == "slider":
        if not _is_number(value):
            return "Expected a number"
        low, high = definition.get("min"), definition.get("max")
        if low is not None and value < low:
            return f"Expected a number >= {low}"
        if high is not None and value > high:
            return f"Expected a number <= {high}"
        return None
    # region
    keys = ("x0", "y0", "x1", "y1")
    if (
        not isinstance(value, dict)
        or set(value) != set(keys)
        or not all(_is_number(value[k]) for k in keys)
    ):
        return "Expected an object of the numbers x0, y0, x1, y1"
    return None


def validate_definitions(items: Sequence[Any]) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Check a list of parameter definitions; return them normalised, and the problems found."""
    out: list[dict[str, Any]] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(([index], "Each parameter definition must be an object"))
            continue
        before = len(problems)
        for key in sorted(set(item) - set(_FIELDS)):
            problems.append(([index, key], "Unknown field of a parameter definition"))
        widget = item.get("widget_type")
        if widget not in WIDGETS:
            problems.append(([index, "widget_type"], f"Expected one of {', '.join(WIDGETS)}"))
        name = item.get("parameter_name")
        if not isinstance(name, str) or not name.strip():
            problems.append(([index, "parameter_name"], "Expected a non-empty string"))
        elif name in seen:
            problems.append(([index, "parameter_name"], f"Parameter {name!r} is defined twice"))
        else:
            seen.add(name)
        for key in _STRINGS:
            if item.get(key) is not None and not isinstance(item[key], str):
                problems.append(([index, key], "Expected a string"))
        for key in _NUMBERS:
            if item.get(key) is not None and not _is_number(item[key]):
                problems.append(([index, key], "Expected a number"))
        if item.get("required") is not None and not isinstance(item["required"], bool):
            problems.append(([index, "required"], "Expected a boolean"))
        if len(problems) > before:
            continue
        normal = {key: item.get(key) for key in _FIELDS}
        if normal["default"] is not None:
            why = check_value(normal, normal["default"])
            if why is not None:
                problems.append(([index, "default"], why))
                continue
        out.append(normal)
    return out, problems


def resolve_parameters(
    definitions: Sequence[Mapping[str, Any]] | None,
    given: Mapping[str, Any] | None,
    *,
    manual: bool,
) -> tuple[dict[str, Any], list[Problem]]:
    """The parameters a run gets: ``given`` checked, plus defaults for what it left out.

    Args:
        definitions: The job's parameter definitions.
        given: The values sent with the run (``null`` values count as not sent).
        manual: Whether a person asked for the run (required parameters are then enforced).
    """
    values = {k: v for k, v in (given or {}).items() if v is not None}
    problems: list[Problem] = []
    if not definitions:
        return values, problems
    by_name = {d["parameter_name"]: d for d in definitions}
    for name in sorted(set(values) - set(by_name)):
        problems.append(
            ([name], f"The job defines no parameter {name!r}; it has {', '.join(sorted(by_name))}")
        )
    for name, definition in by_name.items():
        if name in values:
            why = check_value(definition, values[name])
            if why is not None:
                problems.append(([name], why))
        elif definition.get("default") is not None:
            values[name] = definition["default"]
        elif manual and definition.get("required"):
            problems.append(([name], "This parameter is required and has no default"))
    return values, problems

"""Shared building blocks of the models: open enums, and short reprs.

An *open* enum keeps values it does not know: a newer server may send a status this release has
never seen, and the SDK must pass it through (as a plain ``str``) instead of failing.

A model that carries a collection (the ids of a 20,000-row write, a query's rows) uses
:func:`bounded_repr`: the first few items of each list or mapping with a count of the rest, long
strings cut, and the whole at most :data:`MAX_REPR` characters, so printing a result in a
notebook or a log line says what matters instead of flooding it. Fields declared
``repr=False`` (signed URLs, keys, a script's code) stay out, as in attrs' own repr.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["MAX_REPR", "OpenEnum", "bounded_repr"]

#: The longest repr of a model that carries a collection.
MAX_REPR = 300
#: Items of a list or mapping shown before "… +N more".
_SHOWN = 3
#: Characters of a string shown before it is cut.
_MAX_STR = 60


class OpenEnum(enum.StrEnum):
    """Base of the SDK's enums; fields typed ``SomeEnum | str`` keep unknown values as ``str``."""

    def __str__(self) -> str:
        return str(self.value)


def _short(value: Any, depth: int) -> str:
    if isinstance(value, str):
        # A field's own string may say more than one deep in a collection (a row's cell).
        limit = _MAX_STR if depth <= 1 else _MAX_STR // 3
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} chars)"
    if isinstance(value, list | tuple):
        shown = [_short(v, depth + 1) for v in value[:_SHOWN]]
        if len(value) > _SHOWN:
            shown.append(f"… +{len(value) - _SHOWN} more")
        body = ", ".join(shown)
        return f"[{body}]" if isinstance(value, list) else f"({body})"
    if isinstance(value, Mapping):
        pairs = [
            f"{_short(k, depth + 1)}: {_short(v, depth + 1)}"
            for k, v in itertools.islice(value.items(), _SHOWN)
        ]
        if len(value) > _SHOWN:
            pairs.append(f"… +{len(value) - _SHOWN} more")
        return "{" + ", ".join(pairs) + "}"
    if attrs.has(type(value)) and depth > 0:
        # A model inside a collection: its name and first fields are enough to recognise it.
        return _fields(value, depth)
    return repr(value)


def _fields(model: Any, depth: int) -> str:
    parts = []
    for field in attrs.fields(type(model)):
        if field.repr is False:
            continue
        parts.append(f"{field.name}={_short(getattr(model, field.name), depth + 1)}")
    return f"{type(model).__name__}({', '.join(parts)})"


def bounded_repr(self: Any) -> str:
    """An attrs-style repr of a model, bounded to :data:`MAX_REPR` characters (see above)."""
    text = _fields(self, 0)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 2] + "…)"

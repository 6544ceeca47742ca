"""Shared building blocks of the models: open enums.

An *open* enum keeps values it does not know: a newer server may send a status this release has
never seen, and the SDK must pass it through (as a plain ``str``) instead of failing.
"""

from __future__ import annotations

import enum

__all__ = ["OpenEnum"]


class OpenEnum(enum.StrEnum):
    """Base of the SDK's enums; fields typed ``SomeEnum | str`` keep unknown values as ``str``."""

    def __str__(self) -> str:
        return str(self.value)

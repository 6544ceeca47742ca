"""Small types shared by the resources: the "not given" sentinel.

Update methods send only the fields the caller passed. ``None`` cannot mean "leave it alone"
there, because some fields are cleared by an explicit value, so their parameters default to
:data:`NOT_GIVEN` instead::

    await client.jobs.update(job_id, description="")   # clears the description
    await client.jobs.update(job_id, archived=True)     # leaves the description alone
"""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["NOT_GIVEN", "NotGiven"]


class NotGiven(enum.Enum):
    """The type of :data:`NOT_GIVEN` (an enum, so type checkers can narrow it away)."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


#: The default of parameters whose field is left out of the request unless given.
NOT_GIVEN: Final = NotGiven.NOT_GIVEN

"""Five-field cron expressions evaluated in an IANA timezone.

The fields are minute (0-59), hour (0-23), day of month (1-31), month (1-12 or ``jan``-``dec``) and
day of week (0-7 or ``sun``-``sat``; 0 and 7 are both Sunday). Each field is a comma-separated
list of items: ``*``, a value, a range ``a-b``, and any of those with a step (``*/15``,
``1-30/2``, ``5/10`` meaning ``5-max/10``). Names are case-insensitive.

As in the classic cron, when both the day of month and the day of week are restricted (neither
field starts with ``*``), a day matches if *either* does; otherwise both must.

Times are wall-clock times in the schedule's timezone. Around daylight-saving changes, a time
that occurs twice fires once (the first time) and a time that does not exist that day (skipped
by the clock change) does not fire that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

__all__ = ["CronError", "CronSchedule", "load_timezone"]

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: name, lowest value, highest value, value names (numbered from the lowest value).
_FIELDS: tuple[tuple[str, int, int, list[str]], ...] = (
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
#: How far ahead a schedule is searched; a valid expression fires within this (Feb 29 included).
_SEARCH_DAYS = 366 * 9


class CronError(ValueError):
    """A cron expression or timezone that cannot be used; the message says why."""


def load_timezone(name: str) -> ZoneInfo:
    """The IANA timezone called ``name`` (``"Europe/Berlin"``, ``"UTC"``).

    Raises:
        CronError: no such timezone.
    """
    try:
        return ZoneInfo(name)
    # OSError: a name that is a folder of the database ("Europe") or too long for a file name.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(
            f"Unknown timezone {name!r}: use an IANA name such as 'Europe/Berlin'"
        ) from None


def _value(text: str, name: str, low: int, high: int, names: list[str]) -> int:
    lowered = text.lower()
    if names and lowered in names:
        return low + names.index(lowered)
    if not text.isdigit():
        raise CronError(f"The {name} field has {text!r}, which is not a number or a name")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"The {name} field has {value}, outside {low}-{high}")
    return value


def _parse_field(text: str, name: str, low: int, high: int, names: list[str]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"The {name} field has an empty list item")
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"The {name} field has the step {step_text!r}; use a number >= 1")
            step = int(step_text)
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise CronError(f"The {name} field has the backwards range {span!r}")
        else:
            first = _value(span, name, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


@attrs.frozen
class CronSchedule:
    """A parsed cron expression, bound to a timezone.

    Use :meth:`parse`; :meth:`next_after` gives the next firing time.
    """

    expression: str
    timezone: ZoneInfo
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str, timezone: str) -> CronSchedule:
        """Parse ``expression`` for ``timezone``.

        Raises:
            CronError: the expression or timezone is invalid, or the schedule never fires.
        """
        tz = load_timezone(timezone)
        fields = expression.split()
        if len(fields) != 5:
            raise CronError(
                f"A cron expression has five fields (minute hour day-of-month month "
                f"day-of-week); {expression!r} has {len(fields)}"
            )
        parsed = [
            _parse_field(text, name, low, high, names)
            for text, (name, low, high, names) in zip(fields, _FIELDS, strict=True)
        ]
        schedule = cls(
            expression=" ".join(fields),
            timezone=tz,
            minutes=tuple(sorted(parsed[0])),
            hours=tuple(sorted(parsed[1])),
            days=parsed[2],
            months=parsed[3],
            weekdays=frozenset(d % 7 for d in parsed[4]),
            days_restricted=not fields[2].startswith("*"),
            weekdays_restricted=not fields[4].startswith("*"),
        )
        schedule.next_after(datetime.now(UTC).timestamp())  # refuse schedules that never fire
        return schedule

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_date or by_weekday
        return by_date and by_weekday

    def next_after(self, after: float) -> float:
        """The first firing time strictly after ``after`` (both Unix timestamps).

        Raises:
            CronError: the schedule never fires (such as February 30th).
        """
        tz = self.timezone
        local = datetime.fromtimestamp(after, tz).replace(second=0, microsecond=0, tzinfo=None)
        start = local + timedelta(minutes=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        wall = datetime.combine(day, dtime(hour, minute))
                        if wall < start - timedelta(hours=3):
                            continue  # well before the search start (slack for DST shifts)
                        aware = wall.replace(tzinfo=tz)
                        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
                            continue  # skipped by a daylight-saving change
                        when = aware.timestamp()
                        if when > after:
                            return when
            day += timedelta(days=1)
        raise CronError(f"The cron expression {self.expression!r} never fires")

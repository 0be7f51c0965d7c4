"""Cron expressions: parsing and next-fire-time calculation, all in UTC.

An expression has 5 fields (``minute hour day-of-month month day-of-week``; the second is 0)
or 6 fields (``second minute hour day-of-month month day-of-week``), separated by whitespace.
Their values: second 0-59, minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC,
day-of-week 0-7 or SUN-SAT, where 0 and 7 are both Sunday. Names are case-insensitive.

Each field is a comma-separated list of items, and each item is one of:

* ``*`` -- every value (``?`` means the same, in day-of-month and day-of-week only);
* ``n`` -- one value, a number or a name;
* ``a-b`` -- every value from ``a`` to ``b`` inclusive (``MON-FRI``);
* ``*/n``, ``a-b/n``, ``a/n`` -- every ``n``-th value of ``*``, of ``a-b``, or of ``a`` up to
  the field's maximum.

As in standard cron, when day-of-month and day-of-week are both restricted (neither is
exactly ``*`` or ``?``), a day matches if *either* matches; otherwise only the restricted one
counts. So ``0 0 13 * FRI`` fires on every 13th and on every Friday.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

__all__ = ["CronSchedule"]

# The longest gap between two fire times of a valid expression is 8 years: February 29th
# across a skipped century leap year (2096 -> 2104). Searching further means it never fires.
_SEARCH_YEARS = 10
_DIGITS = re.compile(r"[0-9]+")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class _Spec(NamedTuple):
    name: str
    lo: int
    hi: int
    names: Mapping[str, int]
    kind: str = ""  # what a name in this field is called: "month" or "day"
    question_ok: bool = False  # whether "?" is allowed


_SECOND = _Spec("second", 0, 59, {})
_MINUTE = _Spec("minute", 0, 59, {})
_HOUR = _Spec("hour", 0, 23, {})
_DOM = _Spec("day-of-month", 1, 31, {}, question_ok=True)
_MONTH = _Spec("month", 1, 12, {name: i for i, name in enumerate(_MONTHS, 1)}, "month")
_DOW = _Spec("day-of-week", 0, 7, {name: i for i, name in enumerate(_DAYS)}, "day", True)


class _FieldError(Exception):
    """A problem with ``token`` (part of a field's text), phrased as a predicate."""

    def __init__(self, token: str, problem: str) -> None:
        super().__init__(problem)
        self.token = token
        self.problem = problem


def _value(spec: _Spec, token: str, item: str) -> int:
    if not token:
        raise _FieldError(item, "has a missing value")
    if _DIGITS.fullmatch(token):
        number = int(token)
        if not spec.lo <= number <= spec.hi:
            raise _FieldError(token, f"is out of range {spec.lo}-{spec.hi}")
        return number
    if token.upper() in spec.names:
        return spec.names[token.upper()]
    if spec.names and token.isalpha():
        names = list(spec.names)
        raise _FieldError(token, f"is not a known {spec.kind} name ({names[0]}-{names[-1]})")
    what = f"a number or {spec.kind} name" if spec.names else "a number"
    raise _FieldError(token, f"is not {what}")


def _item(spec: _Spec, item: str) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _DIGITS.fullmatch(step_text):
            raise _FieldError(item, f"has a non-numeric step {step_text!r}")
        step = int(step_text)
        if step == 0:
            raise _FieldError(item, "has step 0 (the step must be at least 1)")
    if base in ("*", "?"):
        if base == "?" and not spec.question_ok:
            raise _FieldError(item, "uses '?', which only day-of-month and day-of-week allow")
        lo, hi = spec.lo, spec.hi
    elif "-" in base:
        start, _, end = base.partition("-")
        lo, hi = _value(spec, start, item), _value(spec, end, item)
        if lo > hi:
            raise _FieldError(item, f"is a reversed range ({lo} > {hi})")
    else:
        lo = _value(spec, base, item)
        hi = spec.hi if slash else lo
    return range(lo, hi + 1, step)


def _field(spec: _Spec, text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _FieldError(text, "has an empty list item")
        values.update(_item(spec, item))
    if spec is _DOW and 7 in values:
        values = (values - {7}) | {0}
    return tuple(sorted(values))


def _ceil(values: tuple[int, ...], current: int) -> int | None:
    """The smallest of ``values`` (sorted) that is >= ``current``, if any."""
    i = bisect_left(values, current)
    return values[i] if i < len(values) else None


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. Build one with :meth:`parse`."""

    expr: str
    seconds: tuple[int, ...] = field(repr=False)
    minutes: tuple[int, ...] = field(repr=False)
    hours: tuple[int, ...] = field(repr=False)
    days: tuple[int, ...] = field(repr=False)
    months: tuple[int, ...] = field(repr=False)
    weekdays: tuple[int, ...] = field(repr=False)  # 0 = Sunday ... 6 = Saturday
    days_restricted: bool = field(repr=False)
    weekdays_restricted: bool = field(repr=False)

    @classmethod
    def parse(cls, expr: str) -> CronSchedule:
        """Parse ``expr``; raise ``ValueError`` naming the bad field if it is invalid."""
        if not isinstance(expr, str):
            raise TypeError(f"cron expression must be a str, not {type(expr).__name__}")
        texts = expr.split()
        if not texts:
            raise ValueError(f"invalid cron expression {expr!r}: it is empty")
        if len(texts) not in (5, 6):
            raise ValueError(
                f"invalid cron expression {expr!r}: found {len(texts)} fields, expected 5 or 6"
            )
        if len(texts) == 5:
            texts = ["0", *texts]
        specs = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)
        fields: list[tuple[int, ...]] = []
        for spec, text in zip(specs, texts, strict=True):
            try:
                fields.append(_field(spec, text))
            except _FieldError as e:
                where = f"{spec.name} field {text!r}"
                if e.token != text:
                    where += f": {e.token!r}"
                raise ValueError(f"invalid cron expression {expr!r}: {where} {e.problem}") from None
        seconds, minutes, hours, days, months, weekdays = fields
        any_day = ("*", "?")
        return cls(
            expr,
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted=texts[3] not in any_day,
            weekdays_restricted=texts[5] not in any_day,
        )

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after ``when`` (naive means UTC), as aware UTC."""
        start = _utc(when).replace(microsecond=0)
        try:
            found = self._search(start + timedelta(seconds=1), start.year + _SEARCH_YEARS)
        except OverflowError:  # ``when`` is the last second datetime can represent
            found = None
        if found is None:
            raise ValueError(
                f"cron expression {self.expr!r} has no fire time within "
                f"{_SEARCH_YEARS} years after {start.isoformat()}"
            )
        return found

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every fire time ``t`` with ``start <= t < end``, in order (naive means UTC)."""
        end = _utc(end)
        slot = _utc(start)
        if slot.microsecond:
            slot = slot.replace(microsecond=0) + timedelta(seconds=1)
        while slot < end:
            found = self._search(slot, end.year)
            if found is None or found >= end:
                return
            yield found
            slot = found + timedelta(seconds=1)

    def _day_matches(self, dom: int, dow: int) -> bool:
        if not self.weekdays_restricted:
            return dom in self.days
        if not self.days_restricted:
            return dow in self.weekdays
        return dom in self.days or dow in self.weekdays

    def _next_day(self, year: int, month: int, day: int) -> int | None:
        """The first matching day of this month on or after ``day``, if any."""
        first_weekday, month_days = calendar.monthrange(year, month)  # Monday = 0
        for dom in range(day, month_days + 1):
            if self._day_matches(dom, (first_weekday + dom) % 7):  # cron: Sunday = 0
                return dom
        return None

    def _search(self, start: datetime, last_year: int) -> datetime | None:
        """The first fire time at or after ``start`` (whole seconds, UTC), up to the end of
        ``last_year``. Each field that cannot match skips ahead to the next candidate value
        and resets the smaller fields, so a yearly schedule takes a few dozen steps."""
        year, month, day = start.year, start.month, start.day
        hour, minute, second = start.hour, start.minute, start.second
        last_year = min(last_year, datetime.max.year)
        while year <= last_year:
            next_month = _ceil(self.months, month)
            if next_month is None:
                year, month, day, hour, minute, second = year + 1, 1, 1, 0, 0, 0
                continue
            if next_month != month:
                month, day, hour, minute, second = next_month, 1, 0, 0, 0
            next_day = self._next_day(year, month, day)
            if next_day is None:
                month, day, hour, minute, second = month + 1, 1, 0, 0, 0
                continue
            if next_day != day:
                day, hour, minute, second = next_day, 0, 0, 0
            next_hour = _ceil(self.hours, hour)
            if next_hour is None:
                day, hour, minute, second = day + 1, 0, 0, 0
                continue
            if next_hour != hour:
                hour, minute, second = next_hour, 0, 0
            next_minute = _ceil(self.minutes, minute)
            if next_minute is None:
                hour, minute, second = hour + 1, 0, 0
                continue
            if next_minute != minute:
                minute, second = next_minute, 0
            next_second = _ceil(self.seconds, second)
            if next_second is None:
                minute, second = minute + 1, 0
                continue
            return datetime(year, month, day, hour, minute, next_second, tzinfo=UTC)
        return None

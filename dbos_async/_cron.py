"""Cron expressions, read by cronsim: a thin wrapper that keeps our syntax and errors.

An expression has 5 fields (``minute hour day-of-month month day-of-week``; the second is 0)
or 6 fields (``second minute hour day-of-month month day-of-week``), separated by whitespace.
Their values: second 0-59, minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC,
day-of-week 0-7 or SUN-SAT, where 0 and 7 are both Sunday. Names are case-insensitive.
Each field is a comma-separated list of ``*``, ``n``, ``a-b``, ``*/n``, ``a-b/n`` or ``a/n``
(every ``n``-th value from ``a`` up to the field's maximum); ``?`` means ``*`` in
day-of-month and day-of-week. cronsim's extensions work too: ``L`` (last day of the
month), ``LW`` (its last weekday), ``FRI#2`` (its second Friday), ``5L`` (its last Friday).

As in Debian and Vixie cron, day-of-month and day-of-week combine with OR when both are
restricted (neither starts with ``*``): ``0 0 13 * FRI`` fires on every 13th and on every
Friday; when one starts with ``*`` only the other counts.

A schedule reads its fields on the clock of a time zone (UTC unless given an IANA name).
Where daylight-saving time changes the clock, the rules are Debian cron's (cronsim's):

- a schedule at fixed times of day (its minute and hour fields do not start with ``*``):
  a time in the skipped hour fires once, at the first moment after the jump (``30 2 * * *``
  in Europe/Berlin fires at 03:00 CEST on the last Sunday of March); a time in the repeated
  hour fires once, at its first occurrence (02:30 CEST, not again at 02:30 CET);
- a schedule whose minute or hour field starts with ``*`` (``*/15 * * * *``,
  ``0 * * * *``) follows the clock: none of its slots is in the skipped hour, and the
  repeated hour has its slots twice (once per real hour).

A 6-field expression behaves as its 5-field one, each of its minutes expanded by its
seconds field (cronsim alone would read ``0 30 2 * * *`` and ``30 2 * * *`` differently
across a change). Why cronsim (over croniter): it follows Debian cron on both changes,
where croniter fires a daily ``30 2 * * *`` twice on the October change; it reads seconds
first, as we do; it is small, typed, BSD-licensed and maintained by the author of
Healthchecks, which runs it on every check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from cronsim.cronsim import Field

__all__ = ["CronSchedule", "resolve_timezone"]

_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = ("0-59", "0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT")
_SECOND = timedelta(seconds=1)


def resolve_timezone(name: str | None) -> tzinfo:
    """The time zone of an IANA name (``"Europe/Berlin"``), UTC for None; ``ValueError``
    naming an unknown one."""
    if name is None:
        return UTC
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"cron_timezone must be an IANA time zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"cron_timezone {name!r} is not a known IANA time zone name "
            "(like 'Europe/Berlin' or 'America/New_York')"
        ) from None


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check_field(index: int, text: str, expr: str) -> None:
    """Raise ``ValueError`` naming the field (and the item of a list) cronsim refuses."""
    where = f"invalid cron expression {expr!r}: {_FIELDS[index]} field {text!r}"
    if "?" in text:
        if index in (3, 5) and text == "?":
            return
        raise ValueError(f"{where} uses '?', which only day-of-month and day-of-week allow")
    items = text.upper().split(",")
    for item in items:
        try:
            Field(index).parse(item)
        except (CronSimError, ValueError, IndexError):
            bad = f": {item!r}" if len(items) > 1 else ""
            raise ValueError(
                f"{where}{bad} is not valid (values {_RANGES[index]}; items are n, a-b, *, "
                "*/n, a-b/n or a/n, with n at least 1)"
            ) from None


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression on a time zone's clock. Build one with :meth:`parse`."""

    expr: str
    timezone: tzinfo = field(default=UTC)
    _minutes: str = field(default="", repr=False)  # the 5-field expression cronsim reads
    _seconds: tuple[int, ...] = field(default=(0,), repr=False)

    @classmethod
    def parse(cls, expr: str, timezone: str | None = None) -> CronSchedule:
        """Parse ``expr`` (on the clock of the IANA zone ``timezone``, UTC if None);
        ``ValueError`` naming the bad field or zone if it is invalid."""
        if not isinstance(expr, str):
            raise TypeError(f"cron expression must be a str, not {type(expr).__name__}")
        zone = resolve_timezone(timezone)
        texts = expr.split()
        if not texts:
            raise ValueError(f"invalid cron expression {expr!r}: it is empty")
        if len(texts) not in (5, 6):
            raise ValueError(
                f"invalid cron expression {expr!r}: found {len(texts)} fields, expected 5 or 6"
            )
        if len(texts) == 5:
            texts = ["0", *texts]
        for index, text in enumerate(texts):
            _check_field(index, text, expr)
        texts = ["*" if t == "?" else t for t in texts]
        minutes = " ".join(texts[1:])
        try:
            full = CronSim(" ".join(texts), datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError:  # every field is valid alone: the days never exist
            raise ValueError(
                f"invalid cron expression {expr!r}: it never fires (no month of the month "
                f"field {texts[4]!r} has a day of the day-of-month field {texts[3]!r})"
            ) from None
        return cls(expr, zone, minutes, tuple(sorted(full.seconds)))

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after ``when`` (naive means UTC), as aware UTC."""
        after = _utc(when).replace(microsecond=0)
        for slot in self._slots_after(after):
            return slot
        raise ValueError(
            f"cron expression {self.expr!r} has no fire time within 50 years after "
            f"{after.isoformat()}"
        )

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every fire time ``t`` with ``start <= t < end``, in order (naive means UTC)."""
        end = _utc(end)
        first = _utc(start)
        if first.microsecond:
            first = first.replace(microsecond=0) + _SECOND
        for slot in self._slots_after(first - _SECOND):
            if slot >= end:
                return
            yield slot

    def _slots_after(self, after: datetime) -> Iterator[datetime]:
        """The fire times strictly after ``after`` (aware UTC, whole seconds), in order,
        for up to 50 years: the minutes cronsim yields from the one holding ``after``
        (it yields those strictly after its start), each expanded by the seconds field.
        Fixed-time minutes come on the local clock, so a slot of the repeated hour may
        come before ``after``: those are passed over."""
        start = after.replace(second=0) - _SECOND
        try:
            for minute in CronSim(self._minutes, start.astimezone(self.timezone)):
                for second in self._seconds:
                    slot = _utc(minute) + timedelta(seconds=second)  # (UTC keeps the fold)
                    if slot > after:
                        yield slot
        except OverflowError:  # past the last datetime there is
            return

    def local(self, slot: datetime) -> datetime:
        """``slot`` on this schedule's clock (aware; UTC for a UTC schedule)."""
        return slot.astimezone(self.timezone)

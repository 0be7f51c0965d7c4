"""Cron expressions: parsing, next fire times and slots, against hand-computed datetimes.

Calendar anchors used below: 2024-01-01 is a Monday, 2024-05-10 a Friday, 2024-10-01 a
Tuesday (its Fridays are the 4th, 11th, 18th and 25th; the 13th is a Sunday).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dbos_async._cron import CronSchedule


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def nxt(expr: str, when: datetime) -> datetime:
    return CronSchedule.parse(expr).next_after(when)


def test_cron__every_second() -> None:
    every = CronSchedule.parse("* * * * * *")
    assert every.next_after(utc(2024, 5, 10, 12, 34, 56)) == utc(2024, 5, 10, 12, 34, 57)
    assert every.next_after(utc(2024, 12, 31, 23, 59, 59)) == utc(2025, 1, 1, 0, 0, 0)


def test_cron__five_fields_fire_at_second_zero() -> None:
    daily = CronSchedule.parse("30 9 * * *")
    assert daily.next_after(utc(2024, 5, 10, 8, 0, 17)) == utc(2024, 5, 10, 9, 30, 0)
    assert daily.next_after(utc(2024, 5, 10, 9, 30, 0)) == utc(2024, 5, 11, 9, 30, 0)
    assert nxt("* * * * *", utc(2024, 5, 10, 12, 0, 1)) == utc(2024, 5, 10, 12, 1, 0)


def test_cron__expr_kept_and_whitespace_ignored() -> None:
    schedule = CronSchedule.parse("  0\t30   9 * *  * \n")
    assert schedule.expr == "  0\t30   9 * *  * \n"
    assert schedule.next_after(utc(2024, 5, 10)) == utc(2024, 5, 10, 9, 30)


def test_cron__steps() -> None:
    assert nxt("*/15 * * * *", utc(2024, 5, 10, 10, 7)) == utc(2024, 5, 10, 10, 15)
    assert nxt("*/15 * * * *", utc(2024, 5, 10, 10, 45)) == utc(2024, 5, 10, 11, 0)
    assert nxt("0 */6 * * *", utc(2024, 5, 10, 13, 0)) == utc(2024, 5, 10, 18, 0)
    assert nxt("0 */6 * * *", utc(2024, 5, 10, 18, 0)) == utc(2024, 5, 11, 0, 0)
    # a/n runs from a to the field's maximum: seconds 5, 25, 45
    assert nxt("5/20 * * * * *", utc(2024, 5, 10, 12, 0, 30)) == utc(2024, 5, 10, 12, 0, 45)
    assert nxt("5/20 * * * * *", utc(2024, 5, 10, 12, 0, 45)) == utc(2024, 5, 10, 12, 1, 5)
    # a-b/n: minutes 10, 20, 30
    assert nxt("10-30/10 * * * *", utc(2024, 5, 10, 10, 20)) == utc(2024, 5, 10, 10, 30)
    assert nxt("10-30/10 * * * *", utc(2024, 5, 10, 10, 30)) == utc(2024, 5, 10, 11, 10)
    # months 1, 4, 7, 10
    assert nxt("0 0 1 */3 *", utc(2024, 5, 1)) == utc(2024, 7, 1)
    # a step larger than the field fires once, at the start
    assert nxt("*/90 * * * * *", utc(2024, 5, 10, 12, 0, 0)) == utc(2024, 5, 10, 12, 1, 0)


def test_cron__ranges_and_lists() -> None:
    assert nxt("0 9-17 * * *", utc(2024, 5, 10, 17, 0)) == utc(2024, 5, 11, 9, 0)
    assert nxt("0 9-17 * * *", utc(2024, 5, 10, 12, 1)) == utc(2024, 5, 10, 13, 0)
    assert nxt("0 8,12,18 * * *", utc(2024, 5, 10, 12, 0)) == utc(2024, 5, 10, 18, 0)
    assert nxt("0 8,12,18 * * *", utc(2024, 5, 10, 18, 0)) == utc(2024, 5, 11, 8, 0)
    # lists may mix numbers, ranges and steps, in any order and with repeats
    mixed = CronSchedule.parse("50,0-10/5,5 * * * *")
    assert mixed.next_after(utc(2024, 5, 10, 12, 5)) == utc(2024, 5, 10, 12, 10)
    assert mixed.next_after(utc(2024, 5, 10, 12, 10)) == utc(2024, 5, 10, 12, 50)
    assert mixed.next_after(utc(2024, 5, 10, 12, 50)) == utc(2024, 5, 10, 13, 0)


def test_cron__names() -> None:
    # Friday 2024-05-10 09:00 -> Monday 2024-05-13 09:00
    for expr in ("0 9 * * MON-FRI", "0 9 * * mon-fri", "0 9 * * 1-5", "0 9 * * Mon,Tue,WED-fri"):
        assert nxt(expr, utc(2024, 5, 10, 9, 0)) == utc(2024, 5, 13, 9, 0), expr
    assert nxt("0 0 1 jan,Jul *", utc(2024, 2, 1)) == utc(2024, 7, 1)
    assert nxt("0 0 1 MAR-may/2 *", utc(2024, 3, 1)) == utc(2024, 5, 1)
    assert nxt("0 0 1 NOV/1 *", utc(2024, 11, 1)) == utc(2024, 12, 1)


def test_cron__dom_and_dow_restricted_match_either() -> None:
    either = CronSchedule.parse("0 0 13 * FRI")
    assert either.next_after(utc(2024, 10, 1)) == utc(2024, 10, 4)  # a Friday
    assert either.next_after(utc(2024, 10, 11)) == utc(2024, 10, 13)  # a Sunday, the 13th
    assert either.next_after(utc(2024, 10, 13)) == utc(2024, 10, 18)  # a Friday


def test_cron__only_the_restricted_day_field_counts() -> None:
    for dom_only in ("0 0 13 * *", "0 0 13 * ?"):
        schedule = CronSchedule.parse(dom_only)
        assert schedule.next_after(utc(2024, 10, 1)) == utc(2024, 10, 13)
        assert schedule.next_after(utc(2024, 10, 13)) == utc(2024, 11, 13)
    for dow_only in ("0 0 * * FRI", "0 0 ? * 5"):
        schedule = CronSchedule.parse(dow_only)
        assert schedule.next_after(utc(2024, 10, 11)) == utc(2024, 10, 18)
    # a step is a restriction: days 1, 11, 21, 31 or Fridays
    assert nxt("0 0 1/10 * FRI", utc(2024, 10, 1)) == utc(2024, 10, 4)
    assert nxt("0 0 1/10 * FRI", utc(2024, 10, 18)) == utc(2024, 10, 21)


def test_cron__sunday_is_zero_and_seven() -> None:
    # Wednesday 2024-10-02 -> Sunday 2024-10-06
    for expr in ("0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * sun", "0 0 * * 0,7"):
        assert nxt(expr, utc(2024, 10, 2)) == utc(2024, 10, 6), expr
    fri_to_sun = CronSchedule.parse("0 0 * * 5-7")
    assert fri_to_sun.next_after(utc(2024, 10, 5)) == utc(2024, 10, 6)  # Sat -> Sun
    assert fri_to_sun.next_after(utc(2024, 10, 6)) == utc(2024, 10, 11)  # Sun -> Fri
    every_day = CronSchedule.parse("0 0 * * 0-7")
    assert every_day.next_after(utc(2024, 10, 6)) == utc(2024, 10, 7)


def test_cron__month_and_year_rollover() -> None:
    assert nxt("0 0 1 * *", utc(2024, 1, 31, 12)) == utc(2024, 2, 1)
    last = CronSchedule.parse("0 0 31 * *")  # skips the months without a 31st
    assert last.next_after(utc(2024, 1, 31)) == utc(2024, 3, 31)
    assert last.next_after(utc(2024, 3, 31)) == utc(2024, 5, 31)
    assert last.next_after(utc(2024, 12, 31)) == utc(2025, 1, 31)
    assert nxt("0 0 1 1 *", utc(2024, 6, 1)) == utc(2025, 1, 1)
    assert nxt("59 23 31 12 *", utc(2024, 12, 31, 23, 59)) == utc(2025, 12, 31, 23, 59)
    assert nxt("0 0 0 * * *", utc(2024, 12, 31, 0, 0, 1)) == utc(2025, 1, 1)


def test_cron__leap_day() -> None:
    leap = CronSchedule.parse("0 0 29 2 *")
    assert leap.next_after(utc(2025, 1, 1)) == utc(2028, 2, 29)
    assert leap.next_after(utc(2024, 2, 29)) == utc(2028, 2, 29)
    assert leap.next_after(utc(2024, 2, 28, 23, 59, 59)) == utc(2024, 2, 29)
    # 2100 is not a leap year: an eight-year gap
    assert leap.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)


def test_cron__never_fires() -> None:
    for expr in ("0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 ?"):
        schedule = CronSchedule.parse(expr)
        no_fire_time = re.escape(f"cron expression {expr!r} has no fire time within")
        with pytest.raises(ValueError, match=no_fire_time):
            schedule.next_after(utc(2024, 1, 1))
        assert list(schedule.slots_between(utc(2024, 1, 1), utc(2030, 1, 1))) == []


def test_cron__search_is_fast() -> None:
    yearly = CronSchedule.parse("0 0 0 1 1 *")
    leap = CronSchedule.parse("0 0 29 2 *")
    never = CronSchedule.parse("0 0 30 2 *")
    began = time.perf_counter()
    for _ in range(100):
        assert yearly.next_after(utc(2024, 1, 1, 0, 0, 1)) == utc(2025, 1, 1)
        assert leap.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)
    with pytest.raises(ValueError):
        never.next_after(utc(2024, 1, 1))
    # Typically a few ms in all; the bound only catches a search that steps through
    # time second by second (years of seconds: minutes), with room for a loaded machine.
    assert time.perf_counter() - began < 10.0


def test_cron__naive_is_utc_and_aware_is_converted() -> None:
    hourly = CronSchedule.parse("0 * * * *")
    naive = hourly.next_after(datetime(2024, 5, 10, 12, 30))
    plus_two = timezone(timedelta(hours=2))
    aware = hourly.next_after(datetime(2024, 5, 10, 14, 30, tzinfo=plus_two))
    assert naive == aware == utc(2024, 5, 10, 13, 0)
    assert naive.tzinfo is UTC
    assert aware.tzinfo is UTC
    # matching is in UTC: 09:00 at UTC-5 is 14:00 UTC, so the next 09:00 UTC is tomorrow
    minus_five = timezone(timedelta(hours=-5))
    daily = CronSchedule.parse("0 9 * * *")
    assert daily.next_after(datetime(2024, 5, 10, 9, 0, tzinfo=minus_five)) == utc(2024, 5, 11, 9)


def test_cron__strictly_after_a_slot() -> None:
    hourly = CronSchedule.parse("0 * * * *")
    assert hourly.next_after(utc(2024, 5, 10, 12, 0, 0)) == utc(2024, 5, 10, 13, 0)
    assert hourly.next_after(utc(2024, 5, 10, 12, 0, 0, 1)) == utc(2024, 5, 10, 13, 0)
    assert hourly.next_after(utc(2024, 5, 10, 11, 59, 59, 999999)) == utc(2024, 5, 10, 12, 0)
    every = CronSchedule.parse("* * * * * *")
    assert every.next_after(utc(2024, 5, 10, 12, 0, 0)) == utc(2024, 5, 10, 12, 0, 1)


def test_cron__microseconds_truncated() -> None:
    every = CronSchedule.parse("* * * * * *")
    result = every.next_after(utc(2024, 5, 10, 12, 0, 0, 999999))
    assert result == utc(2024, 5, 10, 12, 0, 1)
    assert result.microsecond == 0
    assert every.next_after(datetime(2024, 5, 10, 12, 0, 0, 1)).microsecond == 0


def test_cron__slots_between_bounds() -> None:
    quarter = CronSchedule.parse("*/15 * * * *")
    slots = list(quarter.slots_between(utc(2024, 5, 10, 12, 0), utc(2024, 5, 10, 13, 0)))
    assert slots == [utc(2024, 5, 10, 12, m) for m in (0, 15, 30, 45)]  # start in, end out
    just_after = utc(2024, 5, 10, 12, 0, 0, 1), utc(2024, 5, 10, 13, 0, 0, 1)
    later = list(quarter.slots_between(*just_after))
    assert later == [utc(2024, 5, 10, 12, m) for m in (15, 30, 45)] + [utc(2024, 5, 10, 13)]
    assert list(quarter.slots_between(utc(2024, 5, 10, 12, 1), utc(2024, 5, 10, 12, 15))) == []
    assert list(quarter.slots_between(utc(2024, 5, 10, 13), utc(2024, 5, 10, 12))) == []
    # naive bounds are UTC, aware ones are converted, the results are aware UTC
    plus_two = timezone(timedelta(hours=2))
    start, end = datetime(2024, 5, 10, 12, 20), datetime(2024, 5, 10, 14, 50, tzinfo=plus_two)
    mixed = quarter.slots_between(start, end)
    assert list(mixed) == [utc(2024, 5, 10, 12, 30), utc(2024, 5, 10, 12, 45)]


def test_cron__slots_between_across_years() -> None:
    leap = CronSchedule.parse("0 0 29 2 *")
    slots = list(leap.slots_between(utc(2024, 2, 29), utc(2032, 2, 29)))
    assert slots == [utc(2024, 2, 29), utc(2028, 2, 29)]
    every = CronSchedule.parse("* * * * * *")
    slots = list(every.slots_between(utc(2024, 12, 31, 23, 59, 58), utc(2025, 1, 1, 0, 0, 2)))
    assert slots == [
        utc(2024, 12, 31, 23, 59, 58),
        utc(2024, 12, 31, 23, 59, 59),
        utc(2025, 1, 1, 0, 0, 0),
        utc(2025, 1, 1, 0, 0, 1),
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "found 4 fields, expected 5 or 6"),
        ("* * * * * * *", "found 7 fields, expected 5 or 6"),
        ("", "'': it is empty"),
        ("   ", "it is empty"),
        ("61 * * * * *", "second field '61' is out of range 0-59"),
        ("60 * * * *", "minute field '60' is out of range 0-59"),
        ("0 24 * * *", "hour field '24' is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0' is out of range 1-31"),
        ("0 0 32 * *", "day-of-month field '32' is out of range 1-31"),
        ("0 0 * 13 *", "month field '13' is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8' is out of range 0-7"),
        ("5,61 * * * * *", "second field '5,61': '61' is out of range 0-59"),
        ("50-61 * * * * *", "second field '50-61': '61' is out of range 0-59"),
        ("5-2 * * * *", r"minute field '5-2' is a reversed range \(5 > 2\)"),
        ("0 0 * * FRI-MON", r"day-of-week field 'FRI-MON' is a reversed range \(5 > 1\)"),
        ("*/0 * * * *", r"minute field '\*/0' has step 0"),
        ("0 1-5/0 * * *", "hour field '1-5/0' has step 0"),
        ("*/x * * * *", r"minute field '\*/x' has a non-numeric step 'x'"),
        ("*/ * * * *", r"minute field '\*/' has a non-numeric step ''"),
        ("*/-1 * * * *", r"minute field '\*/-1' has a non-numeric step '-1'"),
        ("*/2/2 * * * *", r"minute field '\*/2/2' has a non-numeric step '2/2'"),
        ("0 0 * FOO *", r"month field 'FOO' is not a known month name \(JAN-DEC\)"),
        ("0 0 * * MONDAY", r"day-of-week field 'MONDAY' is not a known day name \(SUN-SAT\)"),
        ("0 0 * MON *", "month field 'MON' is not a known month name"),
        ("JAN 0 * * *", "minute field 'JAN' is not a number"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
        ("1, * * * *", "minute field '1,' has an empty list item"),
        (",1 * * * *", "minute field ',1' has an empty list item"),
        ("1x * * * *", "minute field '1x' is not a number"),
        ("0 0 * * M@N", "day-of-week field 'M@N' is not a number or day name"),
        ("# * * * *", "minute field '#' is not a number"),
        ("-5 * * * *", "minute field '-5' has a missing value"),
        ("5- * * * *", "minute field '5-' has a missing value"),
        ("1-2-3 * * * *", "minute field '1-2-3': '2-3' is not a number"),
        ("? * * * *", "minute field '\\?' uses '\\?'"),
        ("0 0 * ? *", "month field '\\?' uses '\\?'"),
        ("0 0 1.5 * *", "day-of-month field '1.5' is not a number"),
        ("0 0 \u0663 * *", "day-of-month field '\u0663' is not a number"),
    ],
)
def test_cron__invalid(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        CronSchedule.parse(expr)
    assert str(info.value).startswith(f"invalid cron expression {expr!r}: ")


@pytest.mark.parametrize("expr", [None, 5, b"* * * * *", ["*"] * 5])
def test_cron__not_a_str(expr: Any) -> None:
    with pytest.raises(TypeError, match="cron expression must be a str"):
        CronSchedule.parse(expr)

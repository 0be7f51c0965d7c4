"""Cron expressions: parsing, next fire times and slots, against hand-computed datetimes.

Calendar anchors used below: 2024-01-01 is a Monday, 2024-05-10 a Friday, 2024-10-01 a
Tuesday (its Fridays are the 4th, 11th, 18th and 25th; the 13th is a Sunday).
"""

from __future__ import annotations

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
    # Days that no month has are refused when parsed (cronsim finds them), not later.
    for expr in ("0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 ?"):
        with pytest.raises(ValueError, match="it never fires") as info:
            CronSchedule.parse(expr)
        assert str(info.value).startswith(f"invalid cron expression {expr!r}: ")


def test_cron__search_is_fast() -> None:
    yearly = CronSchedule.parse("0 0 0 1 1 *")
    leap = CronSchedule.parse("0 0 29 2 *")
    berlin = CronSchedule.parse("0 0 29 2 *", "Europe/Berlin")
    began = time.perf_counter()
    for _ in range(100):
        assert yearly.next_after(utc(2024, 1, 1, 0, 0, 1)) == utc(2025, 1, 1)
        assert leap.next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)
        assert berlin.next_after(utc(2096, 3, 1)) == utc(2104, 2, 28, 23)
    every = CronSchedule.parse("* * * * * *")
    day = list(every.slots_between(utc(2024, 5, 10), utc(2024, 5, 11)))
    assert len(day) == 86400
    # Typically well under a second in all; the bound only catches a search that steps
    # through time second by second (years of seconds: minutes), with room for a loaded
    # machine.
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
        ("61 * * * * *", "second field '61' is not valid \\(values 0-59"),
        ("60 * * * *", "minute field '60'"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 0 * *", "day-of-month field '0'"),
        ("0 0 32 * *", "day-of-month field '32' is not valid \\(values 1-31"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day-of-week field '8' is not valid \\(values 0-7 or SUN-SAT"),
        ("5,61 * * * * *", "second field '5,61': '61'"),
        ("50-61 * * * * *", "second field '50-61' is not valid \\(values 0-59"),
        ("5-2 * * * *", r"minute field '5-2'"),
        ("0 0 * * FRI-MON", r"day-of-week field 'FRI-MON'"),
        ("*/0 * * * *", r"minute field '\*/0'"),
        ("0 1-5/0 * * *", "hour field '1-5/0'"),
        ("*/x * * * *", r"minute field '\*/x'"),
        ("*/ * * * *", r"minute field '\*/'"),
        ("*/-1 * * * *", r"minute field '\*/-1'"),
        ("*/2/2 * * * *", r"minute field '\*/2/2'"),
        ("0 0 * FOO *", r"month field 'FOO' is not valid \(values 1-12 or JAN-DEC"),
        ("0 0 * * MONDAY", r"day-of-week field 'MONDAY'"),
        ("0 0 * MON *", "month field 'MON'"),
        ("JAN 0 * * *", "minute field 'JAN'"),
        ("1,,2 * * * *", "minute field '1,,2': '' is not valid"),
        ("1, * * * *", "minute field '1,': '' is not valid"),
        (",1 * * * *", "minute field ',1': '' is not valid"),
        ("1x * * * *", "minute field '1x'"),
        ("0 0 * * M@N", "day-of-week field 'M@N'"),
        ("# * * * *", "minute field '#'"),
        ("-5 * * * *", "minute field '-5'"),
        ("5- * * * *", "minute field '5-'"),
        ("1-2-3 * * * *", "minute field '1-2-3' is not valid"),
        ("? * * * *", "minute field '\\?' uses '\\?'"),
        ("0 0 * ? *", "month field '\\?' uses '\\?'"),
        ("0 0 1.5 * *", "day-of-month field '1.5'"),
        ("0 0 \u0663 * *", "day-of-month field '\u0663'"),
    ],
)
def test_cron__invalid(expr: str, message: str) -> None:
    """The error names the field, its text and, in a list, the item cronsim refused."""
    with pytest.raises(ValueError, match=message) as info:
        CronSchedule.parse(expr)
    assert str(info.value).startswith(f"invalid cron expression {expr!r}: ")


@pytest.mark.parametrize("expr", [None, 5, b"* * * * *", ["*"] * 5])
def test_cron__not_a_str(expr: Any) -> None:
    with pytest.raises(TypeError, match="cron expression must be a str"):
        CronSchedule.parse(expr)


# -- time zones and daylight-saving time ---------------------------------------------------
#
# Europe/Berlin: CET (UTC+1) to CEST (UTC+2) at 02:00 local on 2024-03-31 (02:00-03:00 is
# skipped), back at 03:00 CEST on 2024-10-27 (02:00-03:00 comes twice: 00:00-01:00 UTC
# as CEST, 01:00-02:00 UTC as CET). America/New_York: EST (UTC-5) to EDT (UTC-4) at
# 02:00 on 2024-03-10, back at 02:00 EDT on 2024-11-03 (01:00-02:00 comes twice).


def test_cron__timezone_reads_the_local_clock() -> None:
    berlin = CronSchedule.parse("0 9 * * *", "Europe/Berlin")
    assert berlin.next_after(utc(2024, 1, 10)) == utc(2024, 1, 10, 8)  # CET
    assert berlin.next_after(utc(2024, 7, 10)) == utc(2024, 7, 10, 7)  # CEST
    assert berlin.local(utc(2024, 7, 10, 7)).hour == 9
    new_york = CronSchedule.parse("0 0 9 * * MON-FRI", "America/New_York")
    assert new_york.next_after(utc(2024, 5, 10, 14)) == utc(2024, 5, 13, 13)  # Fri -> Mon
    # UTC by default, and as a name
    assert CronSchedule.parse("0 9 * * *").next_after(utc(2024, 7, 10)) == utc(2024, 7, 10, 9)
    assert CronSchedule.parse("0 9 * * *", "UTC").next_after(utc(2024, 7, 10)) == utc(
        2024, 7, 10, 9
    )


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", " ", "Europe/Berlin ", "../etc"])
def test_cron__unknown_timezone_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match="IANA time zone name") as info:
        CronSchedule.parse("* * * * *", name)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *", "30 2 * * ?"])
def test_cron__fixed_time_in_the_skipped_hour_fires_once_right_after_the_jump(
    expr: str,
) -> None:
    # 02:30 does not exist in Berlin on 2024-03-31: the slot fires at 03:00 CEST (01:00
    # UTC), once, and the days around keep 02:30.
    daily = CronSchedule.parse(expr, "Europe/Berlin")
    slots = list(daily.slots_between(utc(2024, 3, 29), utc(2024, 4, 2)))
    assert slots == [
        utc(2024, 3, 29, 1, 30),  # 02:30 CET
        utc(2024, 3, 30, 1, 30),  # 02:30 CET
        utc(2024, 3, 31, 1, 0),  # 03:00 CEST, right after the jump
        utc(2024, 4, 1, 0, 30),  # 02:30 CEST
    ]
    assert [daily.local(s).strftime("%H:%M%z") for s in slots] == [
        "02:30+0100",
        "02:30+0100",
        "03:00+0200",
        "02:30+0200",
    ]


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 30 2 * * *"])
def test_cron__fixed_time_in_the_repeated_hour_fires_once_at_its_first_occurrence(
    expr: str,
) -> None:
    # 02:30 happens twice in Berlin on 2024-10-27 (CEST, then CET): the slot fires once,
    # at the first (00:30 UTC).
    daily = CronSchedule.parse(expr, "Europe/Berlin")
    slots = list(daily.slots_between(utc(2024, 10, 26), utc(2024, 10, 29)))
    assert slots == [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]
    # Asked from inside the second 02:30 hour, the next slot is the next day's.
    assert daily.next_after(utc(2024, 10, 27, 1, 15)) == utc(2024, 10, 28, 1, 30)


def test_cron__new_york_fixed_times_across_both_changes() -> None:
    daily = CronSchedule.parse("30 1,2 * * *", "America/New_York")
    # March 10: 01:30 EST, then 02:30 does not exist and fires at 03:00 EDT.
    spring = list(daily.slots_between(utc(2024, 3, 10), utc(2024, 3, 11)))
    assert spring == [utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 0)]
    # November 3: 01:30 comes twice (EDT then EST) and fires at the first; 02:30 EST.
    autumn = list(daily.slots_between(utc(2024, 11, 3), utc(2024, 11, 4)))
    assert autumn == [utc(2024, 11, 3, 5, 30), utc(2024, 11, 3, 7, 30)]


def test_cron__wildcard_hours_follow_the_clock_across_both_changes() -> None:
    hourly = CronSchedule.parse("15 * * * *", "Europe/Berlin")
    # Spring: no 02:15 (it does not exist); one slot per real hour, 23 that day.
    spring = list(hourly.slots_between(utc(2024, 3, 30, 23), utc(2024, 3, 31, 22)))
    assert [hourly.local(s).strftime("%H:%M") for s in spring[:4]] == [
        "00:15",
        "01:15",
        "03:15",
        "04:15",
    ]
    assert spring == [utc(2024, 3, 30, 23, 15) + timedelta(hours=k) for k in range(23)]
    # Autumn: 02:15 twice (CEST, then CET); one slot per real hour, 25 that day.
    autumn = list(hourly.slots_between(utc(2024, 10, 26, 22), utc(2024, 10, 27, 23)))
    assert [hourly.local(s).strftime("%H:%M%z") for s in autumn[:5]] == [
        "00:15+0200",
        "01:15+0200",
        "02:15+0200",
        "02:15+0100",
        "03:15+0100",
    ]
    assert autumn == [utc(2024, 10, 26, 22, 15) + timedelta(hours=k) for k in range(25)]
    # Every second through the repeated hour: 7,200 slots, none twice.
    every = CronSchedule.parse("* * * * * *", "Europe/Berlin")
    seconds = list(every.slots_between(utc(2024, 10, 27, 0), utc(2024, 10, 27, 2)))
    assert len(seconds) == len(set(seconds)) == 7200


def test_cron__seconds_field_expands_each_minute_on_change_days() -> None:
    # 15 and 45 seconds past 02:30 local: in the skipped hour they come after the jump.
    twice = CronSchedule.parse("15,45 30 2 * * *", "Europe/Berlin")
    spring = list(twice.slots_between(utc(2024, 3, 31), utc(2024, 4, 1)))
    assert spring == [utc(2024, 3, 31, 1, 0, 15), utc(2024, 3, 31, 1, 0, 45)]
    autumn = list(twice.slots_between(utc(2024, 10, 27), utc(2024, 10, 28)))
    assert autumn == [utc(2024, 10, 27, 0, 30, 15), utc(2024, 10, 27, 0, 30, 45)]

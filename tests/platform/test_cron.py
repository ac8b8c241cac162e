"""Tests for pygigo.platform.cron: every datetime is explicit (a controllable clock), nothing sleeps."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from pygigo.platform.cron import (
    ALIASES,
    CronError,
    CronSchedule,
    Misfire,
    describe,
    parse_cron,
    slots_to_fire,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def local_day(schedule: CronSchedule, day: date) -> list[datetime]:
    """All slots whose instant falls on ``day`` in the schedule's zone."""
    tz = schedule.timezone
    start = datetime(day.year, day.month, day.day, tzinfo=tz) - timedelta(microseconds=1)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz) - timedelta(microseconds=1)
    return list(schedule.slots_between(start, end))


# -- weekdays, names, steps, aliases --------------------------------------------------------


@pytest.mark.parametrize("dow", ["0", "7", "sun", "SUN", "Sun", "6-7", "0,3"])
def test_weekday_0_and_7_and_sun_are_sunday(dow: str) -> None:
    schedule = parse_cron(f"0 0 * * {dow}")
    # Saturday 2024-10-26 noon -> Sunday 2024-10-27 00:00 (APScheduler's from_crontab says Monday).
    assert schedule.next_after(utc(2024, 10, 26, 12)) == utc(2024, 10, 27)


def test_weekday_1_is_monday() -> None:
    assert parse_cron("0 0 * * 1").next_after(utc(2024, 10, 26, 12)) == utc(2024, 10, 28)


def test_weekday_names_in_ranges_select_working_days() -> None:
    slots = list(parse_cron("0 9 * * Mon-FRI").slots_between(utc(2024, 10, 20), utc(2024, 10, 27)))
    assert [s.date() for s in slots] == [date(2024, 10, d) for d in (21, 22, 23, 24, 25)]
    assert all(s.hour == 9 and s.minute == 0 for s in slots)


def test_month_names_case_insensitive() -> None:
    slots = list(parse_cron("0 0 1 jan,JUL * ").slots_between(utc(2023, 12, 31), utc(2025, 1, 2)))
    assert slots == [utc(2024, 1, 1), utc(2024, 7, 1), utc(2025, 1, 1)]
    assert parse_cron("0 0 1 feb-Apr *").months == {2, 3, 4}


@pytest.mark.parametrize(
    ("field", "expected"),
    [("*/15", {0, 15, 30, 45}), ("1-5/2", {1, 3, 5}), ("5/20", {5, 25, 45}), ("7,3,3", {3, 7})],
)
def test_steps_ranges_lists(field: str, expected: set[int]) -> None:
    schedule = parse_cron(f"{field} * * * *")
    assert schedule.minutes == expected
    slots = list(schedule.slots_between(utc(2024, 1, 1), utc(2024, 1, 1, 1)))
    assert {s.minute for s in slots} == expected
    assert len(slots) == len(expected)


def test_weekday_star_step_folds_seven() -> None:
    assert parse_cron("0 0 * * */2").weekdays == {0, 2, 4, 6}
    assert parse_cron("0 0 * * 5-7").weekdays == {5, 6, 0}


@pytest.mark.parametrize(
    ("dow", "expected"),
    [
        ("fri-sun", {5, 6, 0}),
        ("sat-sun", {6, 0}),
        ("5-7", {5, 6, 0}),
        ("Mon-SUN/2", {1, 3, 5, 0}),
        ("sun-sun", {0}),
    ],
)
def test_sunday_ends_a_range_as_seven(dow: str, expected: set[int]) -> None:
    schedule = parse_cron(f"0 0 * * {dow}")
    assert schedule.weekdays == expected
    days = {s.isoweekday() % 7 for s in schedule.slots_between(utc(2026, 1, 1), utc(2026, 1, 15))}
    assert days == expected


def test_day_fields_are_ored_even_when_dom_can_never_come() -> None:
    # Both fields restricted: the weekday alone keeps '31 2' schedules alive (Vixie's OR rule).
    assert parse_cron("0 0 31 2 mon").next_after(utc(2026, 1, 1)) == utc(2026, 2, 2)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_match_their_expansion(alias: str) -> None:
    schedule = parse_cron(alias.upper())
    expanded = parse_cron(ALIASES[alias])
    start, end = utc(2023, 12, 1), utc(2025, 2, 1)
    assert list(schedule.slots_between(start, end)) == list(expanded.slots_between(start, end))
    assert schedule.expression == alias.upper()


@pytest.mark.parametrize(
    ("alias", "after", "expected"),
    [
        ("@hourly", utc(2024, 5, 5, 10, 1), utc(2024, 5, 5, 11)),
        ("@daily", utc(2024, 5, 5, 10), utc(2024, 5, 6)),
        ("@midnight", utc(2024, 5, 5, 10), utc(2024, 5, 6)),
        ("@weekly", utc(2024, 5, 6), utc(2024, 5, 12)),  # next Sunday
        ("@monthly", utc(2024, 5, 5), utc(2024, 6, 1)),
        ("@yearly", utc(2024, 5, 5), utc(2025, 1, 1)),
        ("@annually", utc(2024, 5, 5), utc(2025, 1, 1)),
    ],
)
def test_alias_next_slot(alias: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(alias).next_after(after) == expected


# -- the Vixie day-of-month / day-of-week rule ------------------------------------------------


def test_both_day_fields_restricted_means_either() -> None:
    days = [s.date() for s in parse_cron("0 0 13 * fri").slots_between(utc(2024, 1, 1), utc(2025, 1, 1))]
    expected = [
        date(2024, 1, 1) + timedelta(days=i)
        for i in range(366)
        if (date(2024, 1, 1) + timedelta(days=i)).day == 13
        or (date(2024, 1, 1) + timedelta(days=i)).weekday() == 4
    ]
    assert days == expected
    assert len(days) == 52 + 12 - 2  # 2024 has two Friday-the-13ths (Sep, Dec)


def test_one_day_field_starred_means_both() -> None:
    only_13th = [s.date() for s in parse_cron("0 0 13 * *").slots_between(utc(2024, 1, 1), utc(2025, 1, 1))]
    assert len(only_13th) == 12
    # Vixie: a field starting with '*' is unrestricted, so '*/2' ANDs with the weekday.
    odd_fridays = list(parse_cron("0 0 */2 * fri").slots_between(utc(2024, 1, 1), utc(2024, 2, 1)))
    assert [s.day for s in odd_fridays] == [5, 19]


# -- invalid expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 * * 8", "day-of-week field '8': value out of range 0-7"),
        ("60 * * * *", "minute field '60': value out of range 0-59"),
        ("* 24 * * *", "hour field '24': value out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': value out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 13 *", "month field '13': value out of range 1-12"),
        ("* * * foo *", "month field 'foo'"),
        ("* * * mon *", "month field 'mon'"),
        ("* * * * jan", "day-of-week field 'jan'"),
        ("* * * * sat-fri", "day-of-week field 'sat-fri': range start is after its end"),
        ("* * * * 5-0", "day-of-week field '5-0': range start is after its end"),
        ("² * * * *", "minute field '²': '²' is not a valid number (ASCII digits)"),
        ("٣ * * * *", "minute field '٣'"),
        ("* 1-٣ * * *", "hour field '1-٣'"),
        ("*/٣ * * * *", "minute field '*/٣': step must be a positive number"),
        ("0 0 31 2 *", "'0 0 31 2 *' never fires: no month in feb has day 31"),
        ("0 0 30,31 feb *", "never fires: no month in feb has day 30,31"),
        ("0 0 31 4,6,9,11 *", "never fires: no month in apr,jun,sep,nov has day 31"),
        ("0 0 31 2 */2", "never fires"),  # '*/2' weekdays: the day fields are ANDed
        ("*/0 * * * *", "minute field '*/0': step must be a positive number"),
        ("1,,2 * * * *", "minute field ''"),
        ("* 1-2-3 * * *", "hour field '1-2-3'"),
        ("* * * * * *", "expected 5 fields, got 6"),
        ("* * * *", "expected 5 fields, got 4"),
        ("", "expected 5 fields, got 0"),
        ("@reboot", "unknown alias '@reboot'"),
    ],
)
def test_invalid_expression_names_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_timezone_is_named() -> None:
    with pytest.raises(CronError, match="Mars/Olympus_Mons"):
        parse_cron("* * * * *", "Mars/Olympus_Mons")


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_cron("* * * * *").next_after(datetime(2024, 1, 1))


# -- timezones ------------------------------------------------------------------------------------


@pytest.fixture
def host_in_tokyo() -> Iterator[None]:
    """Put the host in Asia/Tokyo (UTC+9) for the test, then restore it."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    assert time.timezone == -9 * 3600
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.usefixtures("host_in_tokyo")
def test_host_timezone_is_ignored() -> None:
    assert str(parse_cron("0 9 * * *").timezone) == "UTC"
    assert parse_cron("0 9 * * *").next_after(utc(2024, 6, 1)) == utc(2024, 6, 1, 9)
    assert parse_cron("0 9 * * *", "America/New_York").next_after(utc(2024, 6, 1)) == utc(2024, 6, 1, 13)
    trigger = parse_cron("0 9 * * *", "Europe/Paris").trigger
    assert trigger.get_next_fire_time(None, utc(2024, 6, 1)) == utc(2024, 6, 1, 7)


def test_tzinfo_object_and_results_keep_local_wall_clock() -> None:
    slot = parse_cron("30 2 * * *", PARIS).next_after(utc(2024, 7, 1))
    assert slot == utc(2024, 7, 1, 0, 30)
    assert (slot.hour, slot.minute, slot.tzname()) == (2, 30, "CEST")


# -- daylight saving --------------------------------------------------------------------------


DST_DAYS = [
    pytest.param(PARIS, date(2024, 3, 31), 23, id="paris-spring"),
    pytest.param(PARIS, date(2024, 10, 27), 25, id="paris-fall"),
    pytest.param(NEW_YORK, date(2024, 3, 10), 23, id="newyork-spring"),
    pytest.param(NEW_YORK, date(2024, 11, 3), 25, id="newyork-fall"),
]


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS)
@pytest.mark.parametrize("minute", [0, 30])
def test_hourly_fires_each_real_hour_once(tz: ZoneInfo, day: date, hours: int, minute: int) -> None:
    slots = local_day(parse_cron(f"{minute} * * * *", tz), day)
    assert len(slots) == hours
    gaps = {b - a for a, b in itertools.pairwise(slots)}
    assert gaps == {timedelta(hours=1)}


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS)
def test_sub_hourly_schedule_keeps_its_spacing(tz: ZoneInfo, day: date, hours: int) -> None:
    # In a repeated hour the second pass interleaves with later first-pass wall times.
    slots = local_day(parse_cron("*/20 * * * *", tz), day)
    assert len(slots) == 3 * hours
    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(minutes=20)}


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS)
@pytest.mark.parametrize("expr", ["30 * * * *", "*/20 * * * *", "30 2 * * *", "30 1 * * *", "0 0-5 * * *"])
def test_next_after_from_any_minute_agrees_with_the_day_scan(
    tz: ZoneInfo, day: date, hours: int, expr: str
) -> None:
    # Starting inside a repeated hour must still find its second pass (e.g. 02:40 CEST -> 02:30 CET).
    schedule = parse_cron(expr, tz)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    slots = list(schedule.slots_between(start - timedelta(days=1), start + timedelta(days=3)))
    for minute in range(0, 26 * 60, 5):
        now = start + timedelta(minutes=minute)
        assert schedule.next_after(now) == next(s for s in slots if s > now), now


def test_next_after_inside_repeated_hour_finds_second_pass() -> None:
    schedule = parse_cron("30 * * * *", PARIS)
    assert schedule.next_after(utc(2024, 10, 27, 0, 40)) == utc(2024, 10, 27, 1, 30)


@pytest.mark.parametrize(
    ("tz", "day", "expr", "expected_utc", "wall"),
    [
        # 02:30 does not exist: first valid instant after the gap (03:00 summer time).
        (PARIS, date(2024, 3, 31), "30 2 * * *", utc(2024, 3, 31, 1), (3, 0)),
        (NEW_YORK, date(2024, 3, 10), "30 2 * * *", utc(2024, 3, 10, 7), (3, 0)),
        # 02:30 (Paris) / 01:30 (New York) happen twice: only the first pass fires.
        (PARIS, date(2024, 10, 27), "30 2 * * *", utc(2024, 10, 27, 0, 30), (2, 30)),
        (NEW_YORK, date(2024, 11, 3), "30 1 * * *", utc(2024, 11, 3, 5, 30), (1, 30)),
        (NEW_YORK, date(2024, 11, 3), "30 2 * * *", utc(2024, 11, 3, 7, 30), (2, 30)),
    ],
)
def test_daily_fires_once_on_transition_day(
    tz: ZoneInfo, day: date, expr: str, expected_utc: datetime, wall: tuple[int, int]
) -> None:
    schedule = parse_cron(expr, tz)
    assert local_day(schedule, day) == [expected_utc]
    slot = schedule.next_after(expected_utc - timedelta(hours=12))
    assert slot == expected_utc
    assert slot is not None and (slot.hour, slot.minute) == wall
    # ... and the days around it are ordinary.
    assert len(local_day(schedule, day - timedelta(days=1))) == 1
    assert len(local_day(schedule, day + timedelta(days=1))) == 1


def test_several_skipped_slots_fire_once_after_the_gap() -> None:
    # Fixed-time: 02:00, 02:20, 02:40 do not exist; they run once at 03:00 CEST, with 03:00.
    slots = local_day(parse_cron("0,20,40 2-3 * * *", PARIS), date(2024, 3, 31))
    assert slots == [utc(2024, 3, 31, 1), utc(2024, 3, 31, 1, 20), utc(2024, 3, 31, 1, 40)]


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        # Wall-clock (minute or hour starts with '*'): no make-up run for a skipped time ...
        ("*/15 2 * * *", NEW_YORK, utc(2026, 3, 8, 6, 59), utc(2026, 3, 9, 6)),
        ("*/20 2-3 * * *", PARIS, utc(2024, 3, 31), utc(2024, 3, 31, 1)),  # 03:00 is its own slot
        # ... and a repeated time fires in both passes.
        ("*/30 1 * * *", NEW_YORK, utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6)),
        ("0 */2 * * *", PARIS, utc(2026, 10, 25), utc(2026, 10, 25, 1)),
        ("@hourly", PARIS, utc(2026, 10, 25), utc(2026, 10, 25, 1)),
        # Fixed-time, even when the hours cover the day: the repeated 01:00 is not run again.
        ("0 0-23 * * *", NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 7)),
        ("0 0-23 * * *", NEW_YORK, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7)),  # 02:00 at 03:00 EDT
    ],
)
def test_dst_rule_follows_cronie(expr: str, tz: ZoneInfo, after: datetime, expected: datetime) -> None:
    assert parse_cron(expr, tz).next_after(after) == expected


def test_fixed_time_hours_fire_once_per_wall_hour_on_fall_back_day() -> None:
    assert len(local_day(parse_cron("0 0-23 * * *", NEW_YORK), date(2026, 11, 1))) == 24
    assert len(local_day(parse_cron("0 * * * *", NEW_YORK), date(2026, 11, 1))) == 25


@pytest.mark.parametrize(
    ("expr", "rule"),
    [
        ("30 2 * * *", "fixed-time"),
        ("0 0-23 * * *", "fixed-time"),
        ("@daily", "fixed-time"),
        ("*/15 2 * * *", "wall-clock"),
        ("0 */2 * * *", "wall-clock"),
        ("@hourly", "wall-clock"),
    ],
)
def test_dst_rule_is_read_from_the_leading_star(expr: str, rule: str) -> None:
    assert parse_cron(expr).dst_rule == rule


def test_observes_dst() -> None:
    assert parse_cron("0 0 * * *", PARIS).observes_dst(utc(2026, 6, 1))
    assert parse_cron("0 0 * * *", "Australia/Lord_Howe").observes_dst(utc(2026, 6, 1))
    assert not parse_cron("0 0 * * *", "Asia/Kathmandu").observes_dst(utc(2026, 6, 1))
    assert not parse_cron("0 0 * * *").observes_dst(utc(2026, 6, 1))


@pytest.mark.parametrize(("tz", "day", "hours"), DST_DAYS)
def test_apscheduler_trigger_agrees_across_dst(tz: ZoneInfo, day: date, hours: int) -> None:
    for expr in ("0 * * * *", "30 2 * * *", "30 1 * * *"):
        schedule = parse_cron(expr, tz)
        trigger = schedule.trigger
        start = datetime(day.year, day.month, day.day, tzinfo=tz) - timedelta(hours=1)
        fired, previous, now = [], None, start
        for _ in range(60):  # bounded: a trigger that never advances must fail, not hang
            nxt = trigger.get_next_fire_time(previous, now)
            assert nxt is not None
            if nxt > start + timedelta(hours=26):
                break
            fired.append(nxt)
            previous = now = nxt
        # The trigger's first call includes ``now``; slots_between excludes its start.
        assert fired == list(
            schedule.slots_between(start - timedelta(microseconds=1), start + timedelta(hours=26))
        )


# -- the APScheduler trigger --------------------------------------------------------------------


def test_trigger_is_an_apscheduler_trigger() -> None:
    trigger = parse_cron("0 0 * * 0", "Europe/Paris").trigger
    assert isinstance(trigger, BaseTrigger)
    assert trigger.get_next_fire_time(None, utc(2024, 10, 26)) == datetime(2024, 10, 27, tzinfo=PARIS)
    # now itself is a valid first fire time (APScheduler's contract); previous is exclusive.
    assert trigger.get_next_fire_time(None, utc(2024, 10, 26, 22)) == utc(2024, 10, 26, 22)
    assert trigger.get_next_fire_time(utc(2024, 10, 26, 22), utc(2024, 10, 26, 22)) == utc(2024, 11, 2, 23)


def test_background_scheduler_accepts_the_trigger() -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)
    try:
        job = scheduler.add_job(print, trigger=parse_cron("0 0 * * 7", "Asia/Tokyo").trigger)
        run_at = job.next_run_time.astimezone(ZoneInfo("Asia/Tokyo"))
        assert (run_at.isoweekday(), run_at.hour, run_at.minute) == (7, 0, 0)
    finally:
        scheduler.shutdown(wait=False)


# -- misfire policy ----------------------------------------------------------------------------

EVERY_10 = parse_cron("*/10 * * * *")


@pytest.mark.parametrize(
    ("policy", "now", "expected"),
    [
        # Down from 10:00 to 10:35: 10:10, 10:20, 10:30 were missed.
        (Misfire.SKIP, utc(2024, 1, 1, 10, 35), []),
        (Misfire.ONCE, utc(2024, 1, 1, 10, 35), [utc(2024, 1, 1, 10, 30)]),
        (Misfire.CATCH_UP, utc(2024, 1, 1, 10, 35), [utc(2024, 1, 1, 10, m) for m in (10, 20, 30)]),
        # Back at 10:30:00.5: 10:30 is on time (within grace), the others are missed.
        (Misfire.SKIP, utc(2024, 1, 1, 10, 30, 0, 500_000), [utc(2024, 1, 1, 10, 30)]),
        (Misfire.ONCE, utc(2024, 1, 1, 10, 30, 0, 500_000), [utc(2024, 1, 1, 10, 30)]),
        (
            Misfire.CATCH_UP,
            utc(2024, 1, 1, 10, 30, 0, 500_000),
            [utc(2024, 1, 1, 10, m) for m in (10, 20, 30)],
        ),
        # Nothing due since the last firing.
        (Misfire.SKIP, utc(2024, 1, 1, 10, 9), []),
        (Misfire.ONCE, utc(2024, 1, 1, 10, 9), []),
        (Misfire.CATCH_UP, utc(2024, 1, 1, 10, 9), []),
    ],
)
def test_misfire_policies(policy: Misfire, now: datetime, expected: list[datetime]) -> None:
    assert slots_to_fire(EVERY_10, utc(2024, 1, 1, 10), now, policy) == expected


def test_on_time_slot_fires_under_every_policy() -> None:
    for policy in Misfire:
        assert slots_to_fire(EVERY_10, utc(2024, 1, 1, 10), utc(2024, 1, 1, 10, 10), policy) == [
            utc(2024, 1, 1, 10, 10)
        ]


def test_grace_period_is_respected() -> None:
    now = utc(2024, 1, 1, 10, 30, 5)
    assert slots_to_fire(EVERY_10, utc(2024, 1, 1, 10, 20), now, Misfire.SKIP) == []
    assert slots_to_fire(EVERY_10, utc(2024, 1, 1, 10, 20), now, Misfire.SKIP, grace_s=10) == [
        utc(2024, 1, 1, 10, 30)
    ]


def test_catch_up_is_capped_to_the_most_recent_slots() -> None:
    every_minute = parse_cron("* * * * *")
    now = utc(2024, 6, 1, 12, 0, 30)
    slots = slots_to_fire(every_minute, utc(2023, 6, 1), now, Misfire.CATCH_UP, catch_up_cap=100)
    assert len(slots) == 100
    assert slots[-1] == utc(2024, 6, 1, 12)
    assert slots[0] == utc(2024, 6, 1, 10, 21)
    assert slots == sorted(slots)
    assert slots_to_fire(every_minute, utc(2024, 6, 1, 11, 58), now, Misfire.CATCH_UP, catch_up_cap=100) == [
        utc(2024, 6, 1, 11, 59),
        utc(2024, 6, 1, 12),
    ]


def test_new_schedule_does_not_fire_its_past() -> None:
    for policy in Misfire:
        assert slots_to_fire(EVERY_10, None, utc(2024, 1, 1, 10, 35), policy) == []
        assert slots_to_fire(EVERY_10, None, utc(2024, 1, 1, 10, 30, 0, 200_000), policy) == [
            utc(2024, 1, 1, 10, 30)
        ]


def test_catch_up_across_fall_back_fires_the_repeated_time_once() -> None:
    daily = parse_cron("30 2 * * *", PARIS)
    slots = slots_to_fire(daily, utc(2024, 10, 25, 12), utc(2024, 10, 28, 12), Misfire.CATCH_UP)
    assert slots == [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]


def test_misfire_is_a_str_enum() -> None:
    assert Misfire("catch_up") is Misfire.CATCH_UP
    assert {str(m) for m in Misfire} == {"skip", "once", "catch_up"}


# -- describe ------------------------------------------------------------------------------------


def test_describe_lists_next_runs() -> None:
    assert describe(parse_cron("0 12 * * 1-5"), utc(2024, 10, 25, 13)) == [
        utc(2024, 10, 28, 12),
        utc(2024, 10, 29, 12),
        utc(2024, 10, 30, 12),
    ]
    assert len(describe(parse_cron("@hourly"), utc(2024, 1, 1), count=5)) == 5


def test_leap_day_is_found_years_ahead() -> None:
    assert parse_cron("0 0 29 2 *").next_after(utc(2024, 3, 1)) == utc(2028, 2, 29)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 0 29 2 *", utc(2096, 3, 1), utc(2104, 2, 29)),  # 2100 is not a leap year
        ("0 0 29 2 */7", utc(2026, 1, 1), utc(2032, 2, 29)),  # 29 February on a Sunday (ANDed)
        ("0 0 29 2 */7", utc(2088, 3, 1), utc(2128, 2, 29)),  # ... 40 years on, across 2100
        ("0 0 29 2 1", utc(2026, 1, 1), utc(2026, 2, 2)),  # OR rule: any Monday in February
    ],
)
def test_rare_schedules_are_found_decades_ahead(expr: str, after: datetime, expected: datetime) -> None:
    schedule = parse_cron(expr)
    assert schedule.next_after(after) == expected
    assert schedule.trigger.get_next_fire_time(None, after) == expected


def test_long_ranges_are_not_cut_short() -> None:
    yearly = list(parse_cron("@yearly").slots_between(utc(2000, 1, 1), utc(2020, 1, 1)))
    assert yearly == [utc(year, 1, 1) for year in range(2001, 2021)]


# -- properties ----------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia"]


def _field(values: st.SearchStrategy[int], size: int) -> st.SearchStrategy[frozenset[int] | None]:
    """None renders as '*'; a set renders as a list, so the test's oracle is not the parser."""
    return st.none() | st.frozensets(values, min_size=1, max_size=size)


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, list[frozenset[int] | None], str]:
    fields = [
        draw(_field(st.integers(0, 59), 4)),
        draw(_field(st.integers(0, 23), 4)),
        draw(_field(st.integers(1, 28), 3)),
        draw(_field(st.integers(1, 12), 4)),
        draw(_field(st.integers(0, 7), 3)),
    ]
    month_names = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    day_names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "SUN"]
    text = []
    for index, values in enumerate(fields):
        if values is None:
            text.append("*")
            continue
        names = month_names if index == 3 else day_names if index == 4 else None
        use_names = names is not None and draw(st.booleans())
        text.append(
            ",".join(names[v - (index == 3)] if use_names and names else str(v) for v in sorted(values))
        )
    return " ".join(text), fields, draw(st.sampled_from(ZONES))


def _wall_matches(fields: list[frozenset[int] | None], local: datetime) -> bool:
    minute, hour, dom, month, dow = fields
    weekdays = None if dow is None else {d % 7 for d in dow}
    dom_ok = dom is None or local.day in dom
    dow_ok = weekdays is None or local.isoweekday() % 7 in weekdays
    day_ok = (dom_ok or dow_ok) if dom is not None and dow is not None else (dom_ok and dow_ok)
    return (
        (minute is None or local.minute in minute)
        and (hour is None or local.hour in hour)
        and (month is None or local.month in month)
        and day_ok
    )


@settings(max_examples=150, deadline=None)
@given(expressions(), st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)))
def test_next_after_is_increasing_and_matches(
    case: tuple[str, list[frozenset[int] | None], str], start: datetime
) -> None:
    expr, fields, zone = case
    schedule = parse_cron(expr, zone)
    tz = ZoneInfo(zone)
    previous = start
    for _ in range(6):
        slot = schedule.next_after(previous)
        if slot is None:
            break
        assert slot > previous
        local = slot.astimezone(tz)
        if not _wall_matches(fields, local):
            # Only allowed: a fixed-time slot moved to the end of a spring-forward gap.
            before = (slot - timedelta(seconds=1)).astimezone(tz)
            offset_before, offset_after = before.utcoffset(), local.utcoffset()
            assert offset_before is not None and offset_after is not None
            assert offset_before < offset_after
            assert schedule.fixed_time
        previous = slot


@settings(max_examples=40, deadline=None)
@given(expressions(), st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)))
def test_utc_slots_equal_a_minute_by_minute_scan(
    case: tuple[str, list[frozenset[int] | None], str], start: datetime
) -> None:
    expr, fields, _ = case
    start = start.replace(second=0, microsecond=0)
    brute = [start + timedelta(minutes=i) for i in range(1, 3 * 1440 + 1)]
    expected = [t for t in brute if _wall_matches(fields, t)]
    assert list(parse_cron(expr).slots_between(start, brute[-1])) == expected

"""Declaring schedules: @pygigo.cron / @pygigo.every, validation at declaration, interval slots."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

import pygigo
from pygigo.platform.cron import CronError, Misfire, SlotTrigger, slots_to_fire
from pygigo.platform.registry import registry
from pygigo.platform.schedules import (
    IntervalSchedule,
    ScheduleConfigError,
    parse_timing,
    schedules,
)

from .functions import RUN


@pytest.fixture
def clean_names() -> Iterator[list[str]]:
    """Names of schedules a test declares in the global registry, removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        schedules.remove(name)


def test_cron_stacked_on_a_function_registers_its_schedule(clean_names: list[str]) -> None:
    name = f"paris-{RUN}"
    clean_names.append(name)

    @pygigo.cron("*/15 * * * *", timezone="Europe/Paris", misfire="once", kwargs={"day": "mon"}, name=name)
    @pygigo.function(queue="reports", name=f"stacked_{RUN}")
    def stacked(day: str) -> str:
        return day

    assert isinstance(stacked, pygigo.Function)
    spec = schedules.get(name)
    assert spec is not None
    assert spec.function == f"stacked_{RUN}" and spec.misfire is Misfire.ONCE
    assert dict(spec.kwargs) == {"day": "mon"} and str(spec.timing.timezone) == "Europe/Paris"
    assert isinstance(spec.timing.trigger, SlotTrigger)
    assert stacked.queue == "reports"  # the function keeps its own options


def test_cron_on_a_plain_function_registers_the_function_too(clean_names: list[str]) -> None:
    def plain_job_for_cron() -> None:
        return None

    plain_job_for_cron.__name__ = f"plain_{RUN}"
    clean_names.append(f"plain_{RUN}")
    wrapped = pygigo.cron("@daily")(plain_job_for_cron)
    assert registry.get(f"plain_{RUN}") is wrapped
    spec = schedules.get(f"plain_{RUN}")
    assert spec is not None and spec.expression == "@daily" and spec.misfire is Misfire.SKIP


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field '61': value out of range 0-59"),
        ("0 0 * * 8", "day-of-week field '8': value out of range 0-7"),
        ("0 0 * foo *", "month field 'foo'"),
        ("* * *", "expected 5 fields, got 3"),
        ("@every 3x", "interval '@every 3x'"),
        ("@fortnightly", "unknown alias"),
        ("0 0 31 2 *", "'0 0 31 2 \\*' never fires: no month in feb has day 31"),
        ("0 0 ² * *", "day-of-month field '²'"),
    ],
)
def test_invalid_expression_fails_at_declaration_naming_the_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleConfigError, match=message) as info:
        pygigo.cron(expression)
    # Catchable as Pygigo's configuration error, Django's, and the cron parser's.
    assert isinstance(info.value, pygigo.ConfigurationError)
    assert isinstance(info.value, ImproperlyConfigured)
    assert isinstance(info.value, CronError)


def test_bad_timezone_and_policy_fail_at_declaration() -> None:
    with pytest.raises(ScheduleConfigError, match="unknown timezone 'Mars/Olympus'"):
        pygigo.cron("0 * * * *", timezone="Mars/Olympus")
    with pytest.raises(
        ScheduleConfigError, match="misfire='sometimes': expected one of skip, once, catch_up"
    ):
        pygigo.cron("0 * * * *", misfire="sometimes")
    with pytest.raises(ScheduleConfigError, match="at least 1 second"):
        pygigo.every()


def test_two_schedules_with_one_name_are_refused(clean_names: list[str]) -> None:
    name = f"dup_{RUN}"
    clean_names.append(name)

    @pygigo.cron("0 * * * *", name=name)
    @pygigo.function(name=f"dup_fn_{RUN}")
    def first() -> None: ...

    with pytest.raises(ScheduleConfigError, match=f"Two schedules are named '{name}'"):
        pygigo.cron("30 * * * *", name=name)(first)


def test_every_is_epoch_aligned_whole_seconds(clean_names: list[str]) -> None:
    clean_names.append(f"every_{RUN}")

    @pygigo.every(minutes=1, seconds=30, name=f"every_{RUN}")
    @pygigo.function(name=f"every_fn_{RUN}")
    def job() -> None: ...

    spec = schedules.get(f"every_{RUN}")
    assert spec is not None and spec.expression == "@every 90s"
    start = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    # 90 s divides a day, so slots land on :00/:30 seconds from midnight UTC, whenever we start.
    assert list(spec.timing.slots_between(start, start + timedelta(minutes=4))) == [
        datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 3, 0, tzinfo=UTC),
    ]


def test_interval_slot_boundaries_are_exact() -> None:
    timing = parse_timing("@every 1s")
    assert isinstance(timing, IntervalSchedule) and timing.period_s == 1
    edge = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert timing.next_after(edge) == edge + timedelta(seconds=1)  # strictly after
    assert timing.next_after(edge - timedelta(microseconds=1)) == edge
    assert list(timing.slots_between(edge, edge + timedelta(seconds=3))) == [
        edge + timedelta(seconds=i) for i in (1, 2, 3)
    ]
    with pytest.raises(ValueError, match="naive"):
        timing.next_after(datetime(2026, 1, 1))


def test_interval_trigger_drives_apscheduler_and_slots_to_fire() -> None:
    timing = parse_timing("@every 5m", "Europe/Paris")  # zone validated, irrelevant to intervals
    now = datetime(2026, 1, 1, 10, 7, tzinfo=UTC)
    assert timing.trigger.get_next_fire_time(None, now) == datetime(2026, 1, 1, 10, 10, tzinfo=UTC)
    first = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert timing.trigger.get_next_fire_time(first, now) == datetime(2026, 1, 1, 10, 10, tzinfo=UTC)
    missed = slots_to_fire(timing, first, now + timedelta(minutes=20), Misfire.CATCH_UP, catch_up_cap=3)
    assert missed == [datetime(2026, 1, 1, 10, m, tzinfo=UTC) for m in (15, 20, 25)]

"""Cron expressions with standard (Vixie) crontab semantics, and the misfire policy.

Pure Python + zoneinfo + APScheduler 3.11; no Django. Public API::

    parse_cron(expr, timezone="UTC") -> CronSchedule        # raises CronError(ValueError)
    CronSchedule.next_after(dt) / .slots_between(start, end) / .trigger
    slots_to_fire(schedule, last_fired, now, policy) -> list[datetime]
    describe(schedule, now, count=3) -> list[datetime]

Why not ``CronTrigger.from_crontab``: in APScheduler 3.11 it counts weekday 0 as Monday,
falls back to the host's zone, ANDs day-of-month with day-of-week, fires a daily 02:30 twice on
a fall-back day, and returns non-existent wall times on a spring-forward day. So slots are
computed here, once, and ``CronSchedule.trigger`` is a thin ``BaseTrigger`` over that
computation: the scheduler and the misfire logic can never disagree.

Semantics (cronie's, checked against a model of its source in tests/platform/test_cron_cronie.py)
- 5 fields (read by :mod:`.cron_syntax`): minute hour day-of-month month day-of-week; ``*``,
  lists, ranges, steps (``*/15``, ``1-5/2``); month names jan..dec, weekday names sun..sat
  (case-insensitive); weekday 0 and 7 are both Sunday; ASCII digits only. Aliases ``@hourly
  @daily @midnight @weekly @monthly @yearly @annually``. Two extensions cronie refuses:
  ``5/15`` means ``5-59/15`` (as in APScheduler and croniter), and ``sun`` ending a range is 7
  (``fri-sun``; cronie reads it as 0, a backwards range).
- Day rule (Vixie/cronie): if day-of-month or day-of-week starts with ``*`` the day must
  match both; if both are restricted a day matches when EITHER matches. A schedule whose days
  can never come (``0 0 31 2 *``) is refused with a CronError saying so.
- Daylight saving, in the schedule's zone, as cronie's main loop does it (``cron.c``: its
  ``find_jobs`` tells "wildcard" jobs, ``MIN_STAR | HR_STAR``, from the others):
  * a **wall-clock** job (its minute *or* hour field starts with ``*``: ``*/15 2 * * *``,
    ``0 * * * *``, ``@hourly``) fires whenever the wall clock shows a matching time: times
    skipped by spring forward are not made up, times repeated by fall back fire in both passes;
  * a **fixed-time** job (neither starts with ``*``: ``30 2 * * *``, ``0 0-23 * * *``) runs a
    skipped time at the first instant after the gap (Paris ``30 2 * * *`` at 03:00 CEST) and a
    repeated time only in the first pass.
  Several slots landing on one instant fire once.
- Returned datetimes carry a fixed-offset ``datetime.timezone`` (offset and abbreviation of
  the schedule's zone at that instant). Why: Python compares two datetimes with the *same*
  ZoneInfo by wall time, ignoring ``fold``, so 02:30 CEST and 02:30 CET would compare equal.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from .cron_syntax import ALIASES, MONTH_NAMES, CronError, parse_fields

__all__ = [
    "ALIASES",
    "CronError",
    "CronSchedule",
    "Misfire",
    "SlotSource",
    "SlotTrigger",
    "describe",
    "parse_cron",
    "slots_to_fire",
]

# Longest month, leap years included: a day-of-month beyond it never comes.
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Longest fall-back repeat we look back over (real ones are <= 2 h).
_FOLD_MARGIN = timedelta(hours=3)


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        if hasattr(tz, "localize"):  # pytz zones give wrong offsets with datetime.replace()
            raise CronError(f"unsupported pytz timezone {tz!r}: pass its name or a ZoneInfo")
        return tz
    if tz == "UTC":  # works even on a host without a tz database
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise CronError(f"unknown timezone {tz!r}") from exc


def _require_aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got naive {dt!r}")
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression in one timezone. Immutable and thread-safe.

    ``expression`` is the text as given (aliases kept); ``timezone`` the zone that wall-clock
    fields are read in. Every method takes and returns aware datetimes (any zone in; out with
    a fixed-offset zone, see the module docstring) and is pure: no clock is read.
    """

    expression: str
    timezone: tzinfo
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    day_or: bool  # both day fields restricted: Vixie's OR rule
    fixed_time: bool  # neither minute nor hour field starts with "*": cronie's DST rule
    _sorted: tuple[tuple[int, ...], tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sorted", (tuple(sorted(self.hours)), tuple(sorted(self.minutes))))
        # Refused here, not discovered years later as a job that silently stops: with both day
        # fields ANDed, a day-of-month no chosen month has never comes (with the OR rule, every
        # month has every weekday). Any other schedule fires within one 400-year calendar cycle.
        if not self.day_or and not any(d <= _MONTH_DAYS[m - 1] for m in self.months for d in self.days):
            days = ",".join(map(str, sorted(self.days)))
            months = ",".join(MONTH_NAMES[m - 1] for m in sorted(self.months))
            raise CronError(
                f"{self.expression!r} never fires: no month in {months} has day {days} "
                "(February has at most 29 days; April, June, September and November 30)"
            )

    @property
    def dst_rule(self) -> str:
        """``"fixed-time"`` or ``"wall-clock"``: how the schedule treats DST changes (module docstring)."""
        return "fixed-time" if self.fixed_time else "wall-clock"

    def observes_dst(self, now: datetime) -> bool:
        """Whether the schedule's zone changes its UTC offset in the year after ``now``."""
        start = _require_aware(now, "now")
        offsets = {
            (start + timedelta(days=d)).astimezone(self.timezone).utcoffset() for d in range(0, 366, 7)
        }
        return len(offsets) > 1

    @property
    def trigger(self) -> SlotTrigger:
        """An APScheduler 3.11 trigger firing exactly at this schedule's slots."""
        return SlotTrigger(self)

    def matches_day(self, day: date) -> bool:
        """Whether the calendar day (in the schedule's zone) has slots."""
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)

    def next_after(self, dt: datetime) -> datetime | None:
        """The first slot strictly after ``dt``; None only beyond year 9999 (a schedule that
        can never fire is refused when built). Raises ValueError for a naive ``dt``."""
        return next(self._iter_after(_require_aware(dt, "dt")), None)

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every slot in the half-open interval (start, end], in increasing order."""
        start_utc, end_utc = _require_aware(start, "start"), _require_aware(end, "end")
        for slot in self._iter_after(start_utc):
            if slot > end_utc:
                return
            yield slot

    # -- computation -----------------------------------------------------------------------

    def _iter_after(self, after: datetime) -> Iterator[datetime]:
        """Slots strictly after ``after`` (UTC), increasing and without duplicates.

        Wall times are walked in order and mapped to instants. The mapping is monotonic
        except that a repeated hour's second pass comes after later first-pass times; so a
        candidate is only emitted once a wall time's first-pass instant has passed it.
        """
        wall = (after - _FOLD_MARGIN).astimezone(self.timezone).replace(tzinfo=None, fold=0)
        pending: list[datetime] = []
        last = after
        for candidate in self._walls_from(wall):
            instants = self._instants(candidate)
            if not instants:
                continue
            first = instants[0]
            pending.sort()
            while pending and pending[0] <= first:
                slot = pending.pop(0)
                if slot > last:
                    last = slot
                    yield self._present(slot)
            pending.extend(i for i in instants if i > last)
        for slot in sorted(pending):
            if slot > last:
                last = slot
                yield self._present(slot)

    def _walls_from(self, start: datetime) -> Iterator[datetime]:
        """Naive wall times >= start's minute matching the expression, in order; ends at year 9999."""
        hours, minutes = self._sorted
        first = start.replace(second=0, microsecond=0)
        for day in self._days_from(start.date()):
            for hour in hours:
                for minute in minutes:
                    wall = datetime.combine(day, time(hour, minute))
                    if wall >= first:
                        yield wall

    def _days_from(self, day: date) -> Iterator[date]:
        """Matching days from ``day`` on, skipping whole months that cannot match. The wait is
        finite (``__post_init__`` refuses a schedule that never fires) and at most decades:
        29 February on a given weekday can be 40 years away (2100 is not a leap year)."""
        while True:
            if day.month not in self.months:
                if day.year == date.max.year and day.month == 12:
                    return
                day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
                continue
            if self.matches_day(day):
                yield day
            if day == date.max:
                return
            day += timedelta(days=1)

    def _instants(self, wall: datetime) -> list[datetime]:
        """UTC instants a wall time fires at, under the DST policy."""
        tz = self.timezone
        first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if first == second:  # ordinary time
            return [first]
        exists = first.astimezone(tz).replace(tzinfo=None) == wall
        if exists:  # repeated (fall back): fold=0 is the earlier pass
            return [first] if self.fixed_time else [first, second]
        if not self.fixed_time:  # skipped (spring forward)
            return []
        return [_transition(tz, min(first, second), max(first, second))]

    def _present(self, instant: datetime) -> datetime:
        local = instant.astimezone(self.timezone)
        offset, name = local.utcoffset() or timedelta(0), local.tzname()
        return instant.astimezone(timezone(offset, name) if name else timezone(offset))


def _transition(tz: tzinfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose UTC offset differs from lo's: the end of a gap."""
    before = lo.astimezone(tz).utcoffset()
    low, high = 0, int((hi - lo).total_seconds())
    while low + 1 < high:  # invariant: offset(lo+low) == before != offset(lo+high)
        mid = (low + high) // 2
        if (lo + timedelta(seconds=mid)).astimezone(tz).utcoffset() == before:
            low = mid
        else:
            high = mid
    return lo + timedelta(seconds=high)


def parse_cron(expr: str, timezone: str | tzinfo = "UTC") -> CronSchedule:
    """Parse a 5-field crontab expression or an ``@alias`` into a CronSchedule.

    ``timezone`` is an IANA name or a tzinfo; the host's zone is never consulted. Raises
    CronError naming the bad field (``"day-of-week field '8': value out of range 0-7"``),
    the field count, the unknown alias, or the unknown timezone.
    """
    zone = _zone(timezone)
    return CronSchedule(expr.strip(), zone, *parse_fields(expr))


class SlotSource(Protocol):
    """What ``slots_to_fire`` and ``describe`` need: a CronSchedule, or any other schedule
    (e.g. the scheduler's fixed-interval one) with the same two pure methods."""

    def next_after(self, dt: datetime) -> datetime | None: ...

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]: ...


class SlotTrigger(BaseTrigger):
    """APScheduler 3.11 trigger over any SlotSource (a CronSchedule, an interval schedule):
    APScheduler is only the alarm clock; the slots come from the schedule's own arithmetic.

    ``get_next_fire_time(previous, now)``: the slot after ``previous`` when given, else the
    first slot at or after ``now`` (APScheduler's contract; its scheduler applies its own
    misfire grace, Pygigo's runner uses ``slots_to_fire``). APScheduler drops a job whose
    trigger returns None; here that cannot happen before year 9999, since both kinds of
    schedule always have a next slot (a cron schedule that can never fire is refused when
    parsed). Job stores that pickle triggers are not supported: Pygigo keeps jobs in memory and
    schedules in its own store.
    """

    __slots__ = ("jitter", "schedule")

    def __init__(self, schedule: SlotSource) -> None:
        self.schedule = schedule
        self.jitter = None

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            return self.schedule.next_after(previous_fire_time)
        return self.schedule.next_after(now - timedelta(microseconds=1))

    def __str__(self) -> str:
        return f"slots[{self.schedule!r}]"


class Misfire(enum.StrEnum):
    """What to do with slots missed while no scheduler ran (stored per schedule)."""

    SKIP = "skip"  # drop missed slots; fire only a slot due within the grace period
    ONCE = "once"  # fire the latest missed slot once
    CATCH_UP = "catch_up"  # fire every missed slot (the most recent ``catch_up_cap``), in order


def _latest_slots(schedule: SlotSource, after: datetime, upto: datetime, n: int) -> list[datetime]:
    """The last ``n`` slots in (after, upto], in order, without walking years of history:
    the look-back window doubles until it holds ``n`` slots or reaches ``after``."""
    if n <= 0 or upto <= after:
        return []
    window = timedelta(hours=1)
    while True:
        start = max(after, upto - window)
        found: deque[datetime] = deque(schedule.slots_between(start, upto), maxlen=n)
        if len(found) >= n or start == after:
            return list(found)
        window *= 2


def slots_to_fire(
    schedule: SlotSource,
    last_fired: datetime | None,
    now: datetime,
    policy: Misfire,
    *,
    catch_up_cap: int = 100,
    grace_s: float = 1.0,
) -> list[datetime]:
    """The slots to fire now, in increasing order. Pure: the caller supplies the clock.

    Due slots are those in (last_fired, now]; with no ``last_fired`` (a new schedule) only
    slots within the grace period are due, so a new schedule never fires its past. A slot
    older than ``now - grace_s`` is *missed*. SKIP: the due slots within grace. ONCE: the
    latest due slot. CATCH_UP: the most recent ``catch_up_cap`` due slots.
    """
    now_utc = _require_aware(now, "now")
    grace_start = now_utc - timedelta(seconds=grace_s)
    after = grace_start if last_fired is None else _require_aware(last_fired, "last_fired")
    if policy is Misfire.SKIP:
        return _latest_slots(schedule, max(after, grace_start), now_utc, catch_up_cap)
    if policy is Misfire.ONCE:
        return _latest_slots(schedule, after, now_utc, 1)
    if policy is Misfire.CATCH_UP:
        return _latest_slots(schedule, after, now_utc, catch_up_cap)
    raise ValueError(f"unknown misfire policy {policy!r}")


def describe(schedule: SlotSource, now: datetime, count: int = 3) -> list[datetime]:
    """The next ``count`` slots strictly after ``now`` (fewer if the schedule ends)."""
    out: list[datetime] = []
    slot: datetime | None = now
    while len(out) < count and slot is not None:
        slot = schedule.next_after(slot)
        if slot is not None:
            out.append(slot)
    return out

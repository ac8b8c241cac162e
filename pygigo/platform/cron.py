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

Semantics
- 5 fields: minute hour day-of-month month day-of-week; ``*``, lists, ranges, steps
  (``*/15``, ``1-5/2``, ``5/15`` = ``5-max/15``); month names jan..dec, weekday names
  sun..sat (case-insensitive); weekday 0 and 7 are both Sunday. Aliases ``@hourly @daily
  @midnight @weekly @monthly @yearly @annually``.
- Day rule (Vixie/cronie): if day-of-month or day-of-week starts with ``*`` the day must
  match both; if both are restricted a day matches when EITHER matches.
- Daylight saving, in the schedule's zone. A schedule whose hour field covers all 24 hours
  follows real time; any other schedule names wall-clock times:
  * spring forward (wall time skipped): hour-covering schedules just skip the missing wall
    times (``0 * * * *`` fires each real hour once); wall-clock schedules run at the first
    valid instant after the gap, like Vixie cron (Paris ``30 2 * * *`` runs at 03:00 CEST);
  * fall back (wall time repeated): hour-covering schedules fire in both passes (each real
    hour once); wall-clock schedules fire only in the first pass (02:30 runs once).
  Several slots landing on one instant fire once.
- Returned datetimes carry a fixed-offset ``datetime.timezone`` (offset and abbreviation of
  the schedule's zone at that instant). Why: Python compares two datetimes with the *same*
  ZoneInfo by wall time, ignoring ``fold``, so 02:30 CEST and 02:30 CET would compare equal.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

__all__ = [
    "CronError",
    "CronSchedule",
    "Misfire",
    "SlotSource",
    "SlotTrigger",
    "describe",
    "parse_cron",
    "slots_to_fire",
]

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {n: i for i, n in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, low, high, names): bounds as written in a crontab.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_ITEM = re.compile(r"^(?:(?P<star>\*)|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\w+))?$")
# Days without a match before giving up: dom+month combos repeat every 4 years (leap years).
_SEARCH_DAYS = 5 * 366
# Longest fall-back repeat we look back over (real ones are <= 2 h).
_FOLD_MARGIN = timedelta(hours=3)


class CronError(ValueError):
    """An invalid cron expression or timezone; the message names the field and the value."""


def _parse_field(text: str, index: int) -> frozenset[int]:
    """Parse one field into the set of matching values (weekday 7 folded to 0)."""
    name, low, high, names = _FIELDS[index]

    def value(token: str, item: str) -> int:
        token = token.lower()
        if token in names:
            return names[token]
        if not token.isdigit():
            kind = "number or name" if names else "number"
            raise CronError(f"{name} field {item!r}: {token!r} is not a valid {kind}")
        number = int(token)
        if not low <= number <= high:
            raise CronError(f"{name} field {item!r}: value out of range {low}-{high}")
        return number

    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not item or match is None:
            raise CronError(f"{name} field {item!r}: not a value, range or step (in {text!r})")
        if match["star"]:
            first, last = low, high
        else:
            first = value(match["a"], item)
            # "5/15" means "5-max/15", as in cronie and APScheduler.
            last = value(match["b"], item) if match["b"] else (high if match["step"] else first)
        if first > last:
            raise CronError(f"{name} field {item!r}: range start is after its end")
        step = 1
        if match["step"] is not None:
            if not match["step"].isdigit() or int(match["step"]) < 1:
                raise CronError(f"{name} field {item!r}: step must be a positive number")
            step = int(match["step"])
        values.update(range(first, last + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


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
    _sorted: tuple[tuple[int, ...], tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sorted", (tuple(sorted(self.hours)), tuple(sorted(self.minutes))))

    @property
    def follows_real_time(self) -> bool:
        """True when the hour field covers all 24 hours (DST policy: see module docstring)."""
        return len(self.hours) == 24

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
        """The first slot strictly after ``dt``, or None if the expression never fires again
        (e.g. ``0 0 30 2 *``). Raises ValueError for a naive ``dt``."""
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
        """Naive wall times >= start's minute matching the expression, in order; ends when
        no day has matched for ``_SEARCH_DAYS`` days (e.g. ``0 0 30 2 *``) or at year 9999."""
        hours, minutes = self._sorted
        day, idle = start.date(), 0
        while idle <= _SEARCH_DAYS:
            if self.matches_day(day):
                idle = 0
                for hour in hours:
                    for minute in minutes:
                        wall = datetime.combine(day, time(hour, minute))
                        if wall >= start.replace(second=0, microsecond=0):
                            yield wall
            else:
                idle += 1
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
            return [first, second] if self.follows_real_time else [first]
        if self.follows_real_time:  # skipped (spring forward)
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
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f"unknown alias {text!r}; expected one of {', '.join(ALIASES)}")
        text = ALIASES[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields, got {len(parts)}: {expr!r}")
    minutes, hours, days, months, weekdays = (_parse_field(p, i) for i, p in enumerate(parts))
    return CronSchedule(
        expression=expr.strip(),
        timezone=zone,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        day_or=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )


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
    misfire grace, Pygigo's runner uses ``slots_to_fire``). Job stores that pickle triggers
    are not supported: Pygigo keeps jobs in memory and schedules in its own store.
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

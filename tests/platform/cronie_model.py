"""An executable model of cronie, written from its C source, to check pygigo.platform.cron against.

Nothing here imports Pygigo. Two parts, each following one file of cronie:

* ``load_entry`` reads the five time fields as ``src/entry.c`` does (``get_list`` /
  ``get_range`` / ``get_number``): ``*`` is first-last, ``a-b`` needs ``a <= b``, ``/step`` only
  after ``*`` or a range, names by their first match (so ``sun`` is 0), ASCII digits only, and
  the ``*_STAR`` flags are set when a field's *first character* is ``*``. Aliases set the bits
  and flags ``entry.c`` sets (``@hourly`` is ``HR_STAR``).
* ``CronieDaemon`` is the main loop of ``src/cron.c`` with the daemon's ``TZ`` set to the
  schedule's zone: it wakes at every real minute, reads the wall clock as minutes
  (``clockTime``), and classifies the difference from its ``virtualTime``: 1 (ordinary
  minute: run everything), 2-5 (woke late: replay each minute), 6-180 (DST began: wildcard jobs
  for the current minute, then fixed-time jobs for every skipped minute), <= 0 (DST ended:
  only wildcard jobs until the wall clock catches up) or beyond 180 (clock jump). ``find_jobs``
  decides "wildcard" by ``MIN_STAR | HR_STAR`` and the day by Vixie's rule on
  ``DOM_STAR | DOW_STAR``. A job matched several times in one wake-up runs once (``job_add``).

Shortcut, not semantics: while the clock is steady the daemon skips the rest of a month, day or
hour that cannot match (those minutes run nothing), provided the UTC offset is the same at both
ends of the skip; no zone modelled here changes its offset twice within a month.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # first match wins: sun = 0
# (low, high, names) per field, as entry.c calls get_list.
_FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, _MONTH_NAMES), (0, 7, _DOW_NAMES))
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_MINUTES_PER_DAY = 1440
_GREGORIAN_CYCLE_DAYS = 146_097  # 400 years: the calendar repeats exactly


class Refused(ValueError):
    """cronie's load_entry would reject the line."""


@dataclass(frozen=True)
class Entry:
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]  # 0..7, 0 and 7 both set when either is
    min_star: bool
    hr_star: bool
    dom_star: bool
    dow_star: bool

    @property
    def wildcard(self) -> bool:
        return self.min_star or self.hr_star

    def day_matches(self, day: date) -> bool:
        if day.month not in self.month:
            return False
        dow = day.isoweekday() % 7
        if self.dom_star or self.dow_star:
            return dow in self.dow and day.day in self.dom
        return dow in self.dow or day.day in self.dom

    def matches(self, wall_minute: int) -> bool:
        days, minute_of_day = divmod(wall_minute, _MINUTES_PER_DAY)
        hour, minute = divmod(minute_of_day, 60)
        return minute in self.minute and hour in self.hour and self.day_matches(_day(days))

    def fires_ever(self) -> bool:
        """Some day in one 400-year cycle matches (the calendar repeats after it)."""
        start = date(2000, 1, 1)
        return any(self.day_matches(start + timedelta(days=i)) for i in range(_GREGORIAN_CYCLE_DAYS))


def _number(text: str, low: int, names: tuple[str, ...]) -> int:
    if text.isascii() and text.isdigit():
        return int(text)
    lowered = text.lower()
    if names and lowered.isascii() and lowered in names:
        return names.index(lowered) + low
    raise Refused(f"bad number {text!r}")


def _get_list(text: str, index: int) -> frozenset[int]:
    low, high, names = _FIELDS[index]
    bits: set[int] = set()
    for item in text.split(","):
        head, _, step_text = item.partition("/")
        if head == "*":
            first, last = low, high
        elif "-" in head:
            a, _, b = head.partition("-")
            first, last = _number(a, low, names), _number(b, low, names)
            if first > last:
                raise Refused(f"range {head!r} runs backwards")
        else:
            if step_text:
                raise Refused(f"step after a single number {item!r}")
            first = last = _number(head, low, names)
        step = _number(step_text, 0, ()) if "/" in item else 1
        if step == 0:
            raise Refused("step 0")
        for value in range(first, last + 1, step):
            if not low <= value <= high:
                raise Refused(f"{value} out of range {low}-{high}")
            bits.add(value)
    return frozenset(bits)


_ALIASES = {  # bits as fields, and the flags entry.c sets for each @special
    "@yearly": ("0 0 1 1 *", "dow"),
    "@annually": ("0 0 1 1 *", "dow"),
    "@monthly": ("0 0 1 * *", "dow"),
    "@weekly": ("0 0 * * 0", "dow"),
    "@daily": ("0 0 * * *", ""),
    "@midnight": ("0 0 * * *", ""),
    "@hourly": ("0 * * * *", "hr"),
}


def load_entry(line: str) -> Entry:
    """The time part of a crontab line, as cronie reads it (raises Refused where it fails)."""
    text = line.strip()
    if text.startswith("@"):
        if text not in _ALIASES:
            raise Refused(f"unknown special {text!r}")
        fields_text, flag = _ALIASES[text]
        entry = load_entry(fields_text)
        return Entry(
            entry.minute,
            entry.hour,
            entry.dom,
            entry.month,
            entry.dow,
            min_star=False,
            hr_star=flag == "hr",
            dom_star=False,
            dow_star=flag == "dow",
        )
    parts = text.split()
    if len(parts) != 5:
        raise Refused("need five fields")
    minute, hour, dom, month, dow = (_get_list(part, i) for i, part in enumerate(parts))
    if 0 in dow or 7 in dow:  # "make sundays equivalent"
        dow = dow | {0, 7}
    return Entry(
        minute,
        hour,
        dom,
        month,
        dow,
        min_star=parts[0][0] == "*",
        hr_star=parts[1][0] == "*",
        dom_star=parts[2][0] == "*",
        dow_star=parts[4][0] == "*",
    )


def _day(days_since_epoch: int) -> date:
    return date.fromordinal(_EPOCH_DAY + days_since_epoch)


class CronieDaemon:
    """cronie's main loop for one entry, the daemon running with ``TZ`` = ``zone``."""

    def __init__(self, entry: Entry, zone: str) -> None:
        self.entry = entry
        self.zone = ZoneInfo(zone)

    def wall_minute(self, utc_minute: int) -> int:
        """cronie's ``clockTime``: (time + GMToff) / 60."""
        offset = datetime.fromtimestamp(utc_minute * 60, self.zone).utcoffset()
        assert offset is not None
        return utc_minute + int(offset.total_seconds()) // 60

    def _find_jobs(self, wall_minute: int, do_wild: bool, do_fixed: bool) -> bool:
        wanted = do_wild if self.entry.wildcard else do_fixed
        return wanted and self.entry.matches(wall_minute)

    def runs_after(self, after: datetime, count: int) -> list[datetime]:
        """The first ``count`` instants strictly after ``after`` at which the job runs."""
        after_s = after.timestamp()
        # Start in a steady state well before ``after``: a DST change inside the warm-up is
        # then replayed exactly as the daemon would have lived through it.
        now = int(after_s // 60) - 6 * 60
        virtual = self.wall_minute(now)
        runs: list[datetime] = []
        while len(runs) < count:
            now, virtual = self._skip_idle(now, virtual)
            now += 1
            running = self.wall_minute(now)
            diff = running - virtual
            if diff == 1 or not -180 <= diff <= 180:  # ordinary minute, or a clock jump
                virtual = running
                ran = self._find_jobs(running, True, True)
            elif diff > 5:  # DST began: wildcards now, fixed-time jobs of every skipped minute
                ran = self._find_jobs(running, True, False)
                for minute in range(virtual + 1, running + 1):
                    ran = self._find_jobs(minute, False, True) or ran
                virtual = running
            elif diff > 0:  # woke a few minutes late: replay them all
                ran = any([self._find_jobs(m, True, True) for m in range(virtual + 1, running + 1)])
                virtual = running
            else:  # DST ended: wildcard jobs only, virtual time waits
                ran = self._find_jobs(running, True, False)
            if ran and now * 60 > after_s:
                runs.append(datetime.fromtimestamp(now * 60, UTC))
        return runs

    def _skip_idle(self, now: int, virtual: int) -> tuple[int, int]:
        """Jump to the last minute of the month/day/hour that cannot match, while steady."""
        while virtual == self.wall_minute(now):
            days, minute_of_day = divmod(virtual, _MINUTES_PER_DAY)
            day = _day(days)
            to_hour_end = 59 - minute_of_day % 60
            to_day_end = _MINUTES_PER_DAY - 1 - minute_of_day
            spans = []  # largest first: a span with a DST change inside falls back to a smaller one
            if day.month not in self.entry.month:
                days_left = calendar.monthrange(day.year, day.month)[1] - day.day
                spans = [days_left * _MINUTES_PER_DAY + to_day_end, to_day_end, to_hour_end]
            elif not self.entry.day_matches(day):
                spans = [to_day_end, to_hour_end]
            elif minute_of_day // 60 not in self.entry.hour:
                spans = [to_hour_end]
            span = next((s for s in spans if s and self.wall_minute(now + s) == virtual + s), 0)
            if span == 0:
                break
            now, virtual = now + span, virtual + span
        return now, virtual

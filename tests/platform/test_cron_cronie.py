"""Differential test: ``parse_cron(...).next_after`` against the model of cronie in ``cronie_model``.

Cases are generated from a seed: an expression (lists, ranges, steps, names, ``*`` prefixes
that switch Vixie's day rule and cronie's wildcard DST rule, rare days like 29 February,
aliases), one of six zones (UTC, New York, Paris, Lord Howe with its 30-minute shift,
Kathmandu, Santiago with its midnight change) and a start instant in 2026-2027, most of them in
the hours before a DST change of that zone. Each case compares the next ``FIRE_TIMES`` runs.

Run size: ``make test`` runs a seeded sample; a larger run, e.g.::

    PYGIGO_CRON_DIFF_CASES=20000 .venv/bin/pytest tests/platform/test_cron_cronie.py -q

``PYGIGO_CRON_DIFF_SEED`` picks another sample. A failure lists the first mismatching cases.

Not generated, on purpose (Pygigo's documented extensions, or refused by both):
``5/15`` (cronie refuses a step after a single number; Pygigo reads it as ``5-59/15``), ``sun``
at the end of a range (cronie reads ``sun`` as 0 and refuses ``fri-sun``; Pygigo reads it as 7),
non-ASCII digits and ``@reboot`` (both refuse), and ``CRON_TZ`` (cronie's per-job zone skips
jobs during the daemon's own DST change; Pygigo's model is a daemon running in the job's zone).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pygigo.platform.cron import CronError, parse_cron

from .cronie_model import CronieDaemon, load_entry

ZONES = (
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/Santiago",
)
CASES = int(os.environ.get("PYGIGO_CRON_DIFF_CASES", "1000"))
SEED = int(os.environ.get("PYGIGO_CRON_DIFF_SEED", "2026"))
FIRE_TIMES = 20
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Hours where the six zones change their clocks, so they come up often.
_DST_HOURS = (0, 1, 2, 3, 23)
_ALIASES = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")


def offset_changes(zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Instants in [start, end) where the zone's UTC offset changes: daily steps, then bisection
    to the minute (no zone changes twice in a day)."""
    tz = ZoneInfo(zone)

    def offset(t: datetime) -> timedelta | None:
        return t.astimezone(tz).utcoffset()

    changes, day = [], start
    while day < end:
        if offset(day + timedelta(days=1)) != offset(day):
            low, high = 0, 1440  # minutes into the day: offset(low) is the old one, high the new
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(day + timedelta(minutes=mid)) == offset(day) else (low, mid)
            changes.append(day + timedelta(minutes=high))
        day += timedelta(days=1)
    return changes


def _value(rng: random.Random, index: int) -> str:
    if index == 0:
        return str(rng.choice((0, 0, 15, 30, 45, rng.randrange(60))))
    if index == 1:
        return str(rng.choice(_DST_HOURS) if rng.random() < 0.6 else rng.randrange(24))
    if index == 2:
        return str(rng.choice((1, 13, 28, 29, 30, 31)) if rng.random() < 0.4 else rng.randint(1, 31))
    if index == 3:
        month = rng.randint(1, 12)
        return _MONTHS[month - 1] if rng.random() < 0.3 else str(month)
    day = rng.randint(0, 7)
    return _DAYS[day].upper() if day < 7 and rng.random() < 0.3 else str(day)


def _range(rng: random.Random, index: int) -> str:
    low, high = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))[index]
    first = rng.choice(_DST_HOURS) if index == 1 and rng.random() < 0.5 else rng.randint(low, high)
    last = rng.randint(first, min(high, first + rng.choice((0, 1, 2, 5, 30))))
    text = f"{first}-{last}"
    if rng.random() < 0.3:
        text += f"/{rng.randint(1, 4)}"
    return text


def generate_field(rng: random.Random, index: int) -> str:
    roll = rng.random()
    star_share = (0.35, 0.35, 0.6, 0.7, 0.6)[index]
    if index == 1 and roll > 0.95:
        return "0-23"  # every hour, yet fixed-time: cronie runs a repeated hour once
    if roll < star_share:
        return "*"
    if roll < star_share + 0.12:
        return f"*/{rng.choice((1, 2, 3, 5, 7, 10, 15, 20))}"
    items = [
        _range(rng, index) if rng.random() < 0.35 else _value(rng, index) for _ in range(rng.randint(1, 3))
    ]
    return ",".join(items)


def generate_case(rng: random.Random, changes: dict[str, list[datetime]]) -> tuple[str, str, datetime]:
    zone = rng.choice(ZONES)
    expr = rng.choice(_ALIASES) if rng.random() < 0.03 else " ".join(generate_field(rng, i) for i in range(5))
    roll = rng.random()
    if changes[zone] and roll < 0.85:
        # Frequent schedules must start close to the change to reach it within 20 runs.
        before_min = rng.randint(-90, 180) if roll < 0.5 else rng.randint(-90, 26 * 60)
        start = rng.choice(changes[zone]) - timedelta(minutes=before_min)
    else:
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(2 * 365 * 1440))
    return expr, zone, start + timedelta(seconds=rng.choice((0, 0, 30)))


def pygigo_runs(expr: str, zone: str, after: datetime, count: int) -> list[datetime | None]:
    schedule = parse_cron(expr, zone)
    runs: list[datetime | None] = []
    current: datetime | None = after
    while len(runs) < count and current is not None:
        current = schedule.next_after(current)
        runs.append(current)
    return runs


def compare(expr: str, zone: str, after: datetime) -> str | None:
    """None when Pygigo agrees with the model, else a description of the difference."""
    entry = load_entry(expr)
    try:
        got = pygigo_runs(expr, zone, after, FIRE_TIMES)
    except CronError as exc:
        return None if not entry.fires_ever() else f"refused: {exc}"
    if not entry.fires_ever():
        return f"accepted, cronie never runs it; Pygigo says {got[0]}"
    expected = CronieDaemon(entry, zone).runs_after(after, FIRE_TIMES)
    for index, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        if mine != theirs:
            return f"run {index + 1}: pygigo {mine}, cronie {theirs.astimezone(ZoneInfo(zone))}"
    return None


def test_agrees_with_cronie() -> None:
    rng = random.Random(SEED)
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
    changes = {zone: offset_changes(zone, *window) for zone in ZONES}
    assert len(changes["Australia/Lord_Howe"]) == 4 and changes["UTC"] == []  # the sample is real
    mismatches = []
    for _ in range(CASES):
        expr, zone, after = generate_case(rng, changes)
        difference = compare(expr, zone, after)
        if difference:
            mismatches.append(f"{expr!r} {zone} after {after.isoformat()}: {difference}")
    share = 100 * (1 - len(mismatches) / CASES)
    assert not mismatches, f"{len(mismatches)} of {CASES} cases differ ({share:.1f} % agree):\n" + "\n".join(
        mismatches[:15]
    )

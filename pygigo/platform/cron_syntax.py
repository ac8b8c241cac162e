"""Crontab text to value sets, as cronie's ``entry.c`` reads it; what they mean is in :mod:`.cron`.

Per field: ``*``, lists, ranges, steps, month and weekday names (case-insensitive), ASCII
digits only; weekday 7 is Sunday, folded to 0. Flags read from the text, not the sets (as cronie
does): whether day-of-month or day-of-week starts with ``*`` (Vixie's day rule) and whether the
minute or hour field does (cronie's DST rule).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..adapters.errors import PygigoError

__all__ = ["ALIASES", "MONTH_NAMES", "CronError", "Fields", "parse_fields"]

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {n: i for i, n in enumerate(MONTH_NAMES, 1)}
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


class CronError(PygigoError, ValueError):
    """An invalid cron expression or timezone; the message names the field and the value."""


def _is_number(token: str) -> bool:
    # str.isdigit() also accepts "²" and "٣": cron reads ASCII digits only.
    return token.isascii() and token.isdigit()


def _parse_field(text: str, index: int) -> frozenset[int]:
    """Parse one field into the set of matching values (weekday 7 folded to 0)."""
    name, low, high, names = _FIELDS[index]

    def value(token: str, item: str) -> int:
        token = token.lower()
        if token in names:
            return names[token]
        if not _is_number(token):
            kind = "number or name" if names else "number"
            raise CronError(f"{name} field {item!r}: {token!r} is not a valid {kind} (ASCII digits)")
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
            # "5/15" means "5-max/15": an extension (APScheduler and croniter agree; cronie refuses).
            last = value(match["b"], item) if match["b"] else (high if match["step"] else first)
            if index == 4 and first > 0 and (match["b"] or "").lower() == "sun":
                last = 7  # "fri-sun": Sunday ending a range is day 7 (an extension: cronie refuses)
        if first > last:
            raise CronError(f"{name} field {item!r}: range start is after its end")
        step = 1
        if match["step"] is not None:
            if not _is_number(match["step"]) or int(match["step"]) < 1:
                raise CronError(f"{name} field {item!r}: step must be a positive number")
            step = int(match["step"])
        values.update(range(first, last + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


class Fields(NamedTuple):
    """The parsed fields, named and ordered as :class:`.cron.CronSchedule`'s (described there)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_or: bool
    fixed_time: bool


def parse_fields(expr: str) -> Fields:
    """The five fields of a crontab expression or ``@alias``; raises CronError naming the bad
    field, the field count or the unknown alias."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f"unknown alias {text!r}; expected one of {', '.join(ALIASES)}")
        text = ALIASES[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"expected 5 fields, got {len(parts)}: {expr!r}")
    minutes, hours, days, months, weekdays = (_parse_field(p, i) for i, p in enumerate(parts))
    return Fields(
        minutes,
        hours,
        days,
        months,
        weekdays,
        day_or=not parts[2].startswith("*") and not parts[4].startswith("*"),
        fixed_time=not parts[0].startswith("*") and not parts[1].startswith("*"),
    )

"""Schedules: *when* (a cron expression or a fixed interval) and *what* (a function and its
arguments), declared in code with ``@pygigo.cron`` / ``@pygigo.every`` or stored in the database.

Timings are written as one string, the same in code, in the admin and in ``pygigo schedules``:

* a crontab expression or ``@alias`` (see :mod:`.cron`), read in the schedule's timezone;
* ``@every <n>s|m|h``: a fixed interval of whole seconds. Its slots are multiples of the period
  since the Unix epoch (UTC), so every replica computes the *same* slots without talking to the
  others; that is what makes "one run record per (schedule, slot)" work for sub-minute
  periods. Its timezone is irrelevant (an interval is real time).

Why a separate interval form instead of a 6-field cron with seconds: cron semantics (DST,
wall-clock names, Vixie's day rule) are minute-based and already settled in :mod:`.cron`; a
period of N seconds needs none of that and must not pretend to.

A schedule's *name* is its identity: run records and the "last fired slot" hang on it. A
database row with the same name as a code schedule overrides it (so an operator can disable or
re-time a code schedule from the admin without a deploy).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from ..adapters.base import ConfigurationError
from .cron import CronError, CronSchedule, Misfire, SlotSource, SlotTrigger, parse_cron
from .functions import Function, function

__all__ = [
    "IntervalSchedule",
    "ScheduleConfigError",
    "ScheduleSpec",
    "Timing",
    "cron",
    "every",
    "parse_timing",
    "schedules",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVERY = re.compile(r"^@every\s+(\d+)\s*([smh])$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
DEFAULT_CATCH_UP_CAP = 100


class ScheduleConfigError(ConfigurationError, CronError):
    """A schedule that cannot work (bad expression, timezone, policy, name). Both a
    :class:`ConfigurationError` (so ``except PygigoError`` catches it) and a :class:`CronError`
    (a ``ValueError``), with the field-naming message of the cron parser."""


@dataclasses.dataclass(frozen=True)
class IntervalSchedule:
    """Slots every ``period_s`` whole seconds, at multiples of the period since the epoch (UTC).

    Pure and immutable, like CronSchedule; same ``next_after``/``slots_between``/``trigger``.
    """

    period_s: int
    expression: str
    timezone: tzinfo = UTC

    def __post_init__(self) -> None:
        if self.period_s < 1:
            raise ScheduleConfigError(f"interval {self.expression!r}: period must be at least 1 second")

    def _index(self, dt: datetime) -> int:
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise ValueError(f"expected an aware datetime, got naive {dt!r}")
        # timedelta // timedelta is exact integer arithmetic: no float rounding at slot edges.
        return (dt.astimezone(UTC) - _EPOCH) // timedelta(seconds=self.period_s)

    def _slot(self, index: int) -> datetime:
        return _EPOCH + timedelta(seconds=index * self.period_s)

    def next_after(self, dt: datetime) -> datetime | None:
        """The first slot strictly after ``dt``."""
        return self._slot(self._index(dt) + 1)

    def slots_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every slot in (start, end], increasing."""
        for index in range(self._index(start) + 1, self._index(end) + 1):
            yield self._slot(index)

    @property
    def trigger(self) -> SlotTrigger:
        return SlotTrigger(self)


Timing = CronSchedule | IntervalSchedule


def parse_timing(expression: str, timezone: str | tzinfo = "UTC") -> Timing:
    """Parse a cron expression, an ``@alias`` or ``@every <n>s|m|h``.

    Raises ScheduleConfigError with the cron parser's message, which names the bad field.
    """
    text = expression.strip()
    match = _EVERY.match(text)
    try:
        if match:
            period = int(match[1]) * _UNIT_S[match[2].lower()]
            # Still validate the zone: a typo should fail even where it does not matter.
            zone = parse_cron("* * * * *", timezone).timezone
            return IntervalSchedule(period, text, zone)
        if text.lower().startswith("@every"):
            raise CronError(f"interval {text!r}: expected '@every <n>s', '@every <n>m' or '@every <n>h'")
        return parse_cron(text, timezone)
    except ScheduleConfigError:
        raise
    except CronError as exc:
        raise ScheduleConfigError(str(exc)) from None


def parse_misfire(value: str | Misfire) -> Misfire:
    try:
        return Misfire(value)
    except ValueError:
        known = ", ".join(m.value for m in Misfire)
        raise ScheduleConfigError(f"misfire={value!r}: expected one of {known}") from None


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """One schedule, wherever it was declared. Immutable.

    ``function``: the registered function's name (enqueued through the broker), or, for the
    scheduler's own maintenance jobs, ``local`` is a callable run in the scheduler process.
    ``source``: ``"code"``, ``"db"`` or ``"maintenance"`` (for display).
    """

    name: str
    function: str
    timing: Timing
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    misfire: Misfire = Misfire.SKIP
    catch_up_cap: int = DEFAULT_CATCH_UP_CAP
    enabled: bool = True
    source: Literal["code", "db", "maintenance"] = "code"
    local: Callable[[], object] | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 200:
            raise ScheduleConfigError(f"schedule name {self.name!r}: must be 1 to 200 characters")
        if self.catch_up_cap < 1:
            raise ScheduleConfigError(f"catch_up_cap={self.catch_up_cap}: must be 1 or more")

    @property
    def expression(self) -> str:
        return self.timing.expression

    @property
    def slots(self) -> SlotSource:
        return self.timing


class ScheduleRegistry:
    """The schedules declared in code, by name. Thread-safe."""

    def __init__(self) -> None:
        self._specs: dict[str, ScheduleSpec] = {}
        self._lock = threading.Lock()

    def add(self, spec: ScheduleSpec) -> None:
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing != spec:
                raise ScheduleConfigError(
                    f"Two schedules are named {spec.name!r} ({existing.function} {existing.expression!r} "
                    f"and {spec.function} {spec.expression!r}). Give one a name: @pygigo.cron(..., name=...)."
                )
            self._specs[spec.name] = spec

    def remove(self, name: str) -> None:
        with self._lock:
            self._specs.pop(name, None)

    def get(self, name: str) -> ScheduleSpec | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[ScheduleSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)


schedules = ScheduleRegistry()


def _decorator(
    expression: str,
    *,
    timezone: str | tzinfo,
    misfire: str | Misfire,
    catch_up_cap: int,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    name: str | None,
    enabled: bool,
) -> Callable[[Any], Any]:
    # Everything is validated now, at declaration, not when the first slot comes round.
    timing = parse_timing(expression, timezone)
    policy = parse_misfire(misfire)

    def decorate(target: Any) -> Any:
        # A Django task (Pygigo's task backend) names the function it runs as; the decorator
        # then hands the task back unchanged, so it can still be enqueued as a task.
        runs_as = getattr(target, "pygigo_function", None)
        fn = target if isinstance(target, Function) else runs_as or function(target)
        schedules.add(
            ScheduleSpec(
                name=name or fn.name,
                function=fn.name,
                timing=timing,
                args=tuple(args),
                kwargs=dict(kwargs or {}),
                misfire=policy,
                catch_up_cap=catch_up_cap,
                enabled=enabled,
            )
        )
        return target if runs_as is not None else fn

    return decorate


def cron(
    expression: str,
    *,
    timezone: str | tzinfo = "UTC",
    misfire: str | Misfire = Misfire.SKIP,
    catch_up_cap: int = DEFAULT_CATCH_UP_CAP,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    enabled: bool = True,
) -> Callable[[Any], Any]:
    """Run a function on a cron schedule: ``@pygigo.cron("*/15 * * * *", timezone="Europe/Paris")``.

    Stack it above ``@pygigo.function(...)`` (or use it alone: the function is registered with
    default options), or above a Django ``@task`` of Pygigo's task backend. Returns the
    Function (or the task). The schedule is named after the function unless
    ``name`` is given (needed to put two schedules on one function). Raises
    ScheduleConfigError at declaration for a bad expression, timezone or misfire policy.
    """
    return _decorator(
        expression,
        timezone=timezone,
        misfire=misfire,
        catch_up_cap=catch_up_cap,
        args=args,
        kwargs=kwargs,
        name=name,
        enabled=enabled,
    )


def every(
    *,
    seconds: int = 0,
    minutes: int = 0,
    hours: int = 0,
    misfire: str | Misfire = Misfire.SKIP,
    catch_up_cap: int = DEFAULT_CATCH_UP_CAP,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    enabled: bool = True,
) -> Callable[[Any], Any]:
    """Run a function at a fixed interval of whole seconds (``@every <n>s``), aligned to the
    epoch: ``@pygigo.every(seconds=30)`` fires at :00 and :30 of every minute."""
    total = seconds + 60 * minutes + 3600 * hours
    if total < 1:
        raise ScheduleConfigError("@pygigo.every: the interval must be at least 1 second")
    return _decorator(
        f"@every {total}s",
        timezone="UTC",
        misfire=misfire,
        catch_up_cap=catch_up_cap,
        args=args,
        kwargs=kwargs,
        name=name,
        enabled=enabled,
    )

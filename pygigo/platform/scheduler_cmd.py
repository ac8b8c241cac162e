"""``pygigo scheduler`` and ``pygigo schedules`` (and their ``manage.py`` twins).

``pygigo scheduler myproject.functions`` runs one scheduler replica until SIGTERM/SIGINT (run
as many as you like: the lease and run records keep one firing per slot). ``pygigo schedules``
prints every schedule (built-in, code, database) with its next run times and, in a zone with
daylight saving, whether it is a wall-clock or a fixed-time job.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from django.db import DatabaseError
from django.utils.module_loading import import_string

from ..adapters.base import ConfigurationError
from . import metrics, runtime, settings
from .cron import CronSchedule, describe
from .maintenance import maintenance_schedules
from .metrics import exposition
from .schedule_store import ScheduleStore
from .scheduler import Scheduler, merge_schedules
from .schedules import ScheduleSpec, schedules
from .worker import import_modules, run_system_checks


class Writer(Protocol):
    def write(self, text: str) -> Any: ...


_OPTION_NAMES = {"lease_s", "poll_s", "grace_s", "max_attempts", "retry_delay_s", "stale_after_s", "holder"}


def load_store() -> ScheduleStore:
    path = settings.schedule_store_path()
    try:
        store_class = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"PYGIGO_SCHEDULE_STORE {path!r} cannot be imported: {exc}") from exc
    store: ScheduleStore = store_class()
    return store


def stored_schedules(store: ScheduleStore) -> list[ScheduleSpec]:
    """The store's schedules; a database that is not created or migrated yet says what to run."""
    try:
        return store.load_schedules()
    except DatabaseError as exc:
        raise ConfigurationError(
            f"Cannot read the schedules from the database ({exc}). Create and migrate it: "
            "`pygigo migrate` (or `manage.py migrate`)."
        ) from exc


def build_scheduler(modules: Sequence[str], **overrides: Any) -> Scheduler:
    """Django, the functions modules, the store, the maintenance jobs: a ready Scheduler.
    ``overrides`` (None values ignored) win over ``PYGIGO_SCHEDULER``. Imports ``modules`` and
    ``PYGIGO_FUNCTIONS`` (database schedules may name functions from either)."""
    settings.ensure_django()
    import_modules([*modules, *settings.functions_modules()])
    run_system_checks(databases=["default"])  # database schedules too
    options = {**settings.scheduler_options(), **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"PYGIGO_SCHEDULER: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_OPTION_NAMES))}."
        )
    builtin = maintenance_schedules(settings.maintenance_overrides())
    store = load_store()
    stored_schedules(store)  # fail fast, before any replica starts
    return Scheduler(store, builtin=builtin, **options)


def run_scheduler(modules: Sequence[str], **overrides: Any) -> int:
    """Run one replica until SIGTERM or SIGINT; returns the exit code."""
    scheduler = build_scheduler(modules, **overrides)
    runtime.get_broker().ping()  # fail fast, before claiming any slot
    config = metrics.config()
    if config.enabled and config.port:
        exposition.serve(config.host, config.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler.run(stop)
    return 0


def all_schedules(store: ScheduleStore | None = None) -> dict[str, ScheduleSpec]:
    """Every schedule by name: built-in maintenance, code (``@pygigo.cron``), database."""
    builtin = maintenance_schedules(settings.maintenance_overrides())
    return merge_schedules(builtin, schedules, stored_schedules(store or load_store()))


def _when(slot: datetime) -> str:
    return slot.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _dst_rule(spec: ScheduleSpec, now: datetime) -> str:
    """How a cron schedule meets DST changes, where its zone has them (see :mod:`.cron`)."""
    timing = spec.timing
    if isinstance(timing, CronSchedule) and timing.observes_dst(now):
        return timing.dst_rule
    return "-"


def schedule_table(specs: Mapping[str, ScheduleSpec], now: datetime, count: int = 3) -> str:
    """An aligned text table: one row per schedule, its next ``count`` runs in its own zone."""
    header = ("NAME", "FUNCTION", "SCHEDULE", "TIMEZONE", "DST", "MISFIRE", "ENABLED", "SOURCE", "NEXT RUNS")
    rows = [header]
    for name in sorted(specs):
        spec = specs[name]
        upcoming = describe(spec.slots, now, count) if spec.enabled else []
        rows.append(
            (
                name,
                spec.function,
                spec.expression,
                str(spec.timing.timezone),
                _dst_rule(spec, now),
                spec.misfire.value,
                "yes" if spec.enabled else "no",
                spec.source,
                ", ".join(_when(slot) for slot in upcoming) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def print_schedules(
    modules: Sequence[str], out: Writer, *, count: int = 3, now: datetime | None = None
) -> int:
    settings.ensure_django()
    import_modules([*modules, *settings.functions_modules()])
    specs = all_schedules()
    out.write(schedule_table(specs, now or datetime.now(UTC), count) + "\n")
    if not specs:
        out.write("(no schedules: name your functions modules, or add rows in the admin)\n")
    return 0


def add_scheduler_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", help="modules that define your functions and schedules")
    parser.add_argument("--lease", dest="lease_s", type=float, help="leader lease seconds (default 6)")
    parser.add_argument("--poll", dest="poll_s", type=float, help="seconds between reload checks (default 2)")
    parser.add_argument("--id", dest="holder", help="replica id shown in the lease (default host:pid:random)")


def add_schedules_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", help="modules that define your functions and schedules")
    parser.add_argument("--count", "-n", type=int, default=3, help="next runs to show per schedule")

"""Built-in maintenance jobs, run by the leading scheduler itself (not enqueued: they are
housekeeping of the platform's own storage, and a worker need not load any module for them).

On by default; each can be switched off or re-timed in settings::

    PYGIGO_MAINTENANCE = {
        "prune_invocations": False,                                  # off
        "report_dead_letters": {"schedule": "0 * * * *"},            # hourly
        "prune_dead_messages": {"options": {"older_than_s": 600}},  # passed to the hook
    }

Each job calls a *hook* by dotted path with its ``options`` as keyword arguments. Hooks that
belong to other parts of Pygigo (the invocation store, the database broker) need that part's
Django app: when it is not in INSTALLED_APPS the job is left out (the system check
``pygigo.I001`` says so), so the scheduler works whichever of those parts a project uses.
Unknown job names or keys, and hooks that do not import, are refused, never ignored. Like every
schedule, a job fires once per slot across replicas.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.apps import apps
from django.utils.module_loading import import_string

from ..adapters.base import ConfigurationError, PygigoBroker, PygigoError
from . import runtime
from .cron import Misfire
from .registry import registry
from .schedules import ScheduleSpec, parse_timing

logger = logging.getLogger("pygigo.scheduler.maintenance")

PREFIX = "pygigo.maintenance."

#: job -> enabled, schedule (cron or @every), hook (dotted path), options (hook kwargs).
DEFAULTS: dict[str, dict[str, Any]] = {
    "prune_invocations": {
        "enabled": True,
        "schedule": "17 * * * *",
        "hook": "pygigo.django_site.store.prune",  # past PYGIGO_RESULT_TTL_S
        "options": {},
        "app": "pygigo.django_site",
    },
    # db:// deletes a row when it is acknowledged; what is left to prune is old dead letters.
    "prune_dead_messages": {
        "enabled": True,
        "schedule": "*/10 * * * *",
        "hook": "pygigo.adapters.db.maintenance.prune_dead_letters",
        "options": {"older_than_s": 7 * 24 * 3600},
        "app": "pygigo.adapters.db",
    },
    # db:// messages whose worker died, and invocations stuck in `running` on any broker.
    "requeue_expired_leases": {
        "enabled": True,
        "schedule": "@every 30s",
        "hook": "pygigo.platform.maintenance.requeue_expired_leases",
        "options": {},
        "app": None,  # each part checks its own app (RECOVERY_HOOKS)
    },
    # Invocations accepted while the broker was down (web processes relay them too).
    "relay_outbox": {
        "enabled": True,
        "schedule": "@every 10s",
        "hook": "pygigo.django_site.outbox.relay",
        "options": {},
        "app": "pygigo.django_site",
    },
    "prune_schedule_runs": {
        "enabled": True,
        "schedule": "43 * * * *",
        "hook": "pygigo.django_site.scheduling.store.prune_runs",
        "options": {"older_than_s": 7 * 24 * 3600},
        "app": "pygigo.django_site.scheduling",
    },
    "report_dead_letters": {
        "enabled": True,
        "schedule": "*/5 * * * *",
        "hook": "pygigo.platform.maintenance.report_dead_letters",
        "options": {},
        "app": None,
    },
    # Offloaded request bodies: kept as long as a message pointing at one may still run.
    "purge_claim_checks": {
        "enabled": True,
        "schedule": "29 * * * *",
        "hook": "pygigo.django_site.runner.purge_claim_checks",
        "options": {},
        "app": "pygigo.django_site",
    },
}
#: What PYGIGO_MAINTENANCE may change ("app", the Django app a hook needs, is not a setting).
_KEYS = {"enabled", "schedule", "hook", "options"}


def job_config(overrides: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The defaults with ``PYGIGO_MAINTENANCE`` applied (``False`` = off, ``True`` = on, a dict
    = the keys to change). Raises ConfigurationError for an unknown job, key or a bad value."""
    config = copy.deepcopy(DEFAULTS)
    for job, value in (overrides or {}).items():
        if job not in config:
            raise ConfigurationError(
                f"PYGIGO_MAINTENANCE: unknown job {job!r}. Known jobs: {', '.join(sorted(config))}."
            )
        if isinstance(value, bool):
            config[job]["enabled"] = value
            continue
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"PYGIGO_MAINTENANCE[{job!r}]: expected True, False or a dict.")
        unknown = set(value) - _KEYS
        if unknown:
            raise ConfigurationError(
                f"PYGIGO_MAINTENANCE[{job!r}]: unknown key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_KEYS))}."
            )
        config[job].update(value)
    return config


def skipped_jobs(overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Enabled jobs left out because the Django app their hook needs is not installed:
    {job: that app}."""
    return {
        job: config["app"]
        for job, config in job_config(overrides).items()
        if config["enabled"] and config["app"] and not apps.is_installed(config["app"])
    }


def _resolve(job: str, path: str) -> Callable[..., Any]:
    try:
        hook = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(
            f"PYGIGO_MAINTENANCE[{job!r}]: hook {path!r} cannot be imported: {exc}"
        ) from exc
    if not callable(hook):
        raise ConfigurationError(f"PYGIGO_MAINTENANCE[{job!r}]: hook {path!r} is not callable.")
    return hook


def maintenance_schedules(overrides: Mapping[str, Any] | None = None) -> list[ScheduleSpec]:
    """The enabled maintenance jobs whose app is installed, as local schedules named
    ``pygigo.maintenance.<job>`` (misfire: run once after downtime)."""
    specs = []
    skipped = skipped_jobs(overrides)
    for job, config in job_config(overrides).items():
        if not config["enabled"] or job in skipped:
            continue
        try:
            timing = parse_timing(str(config["schedule"]))
        except ConfigurationError as exc:
            raise ConfigurationError(f"PYGIGO_MAINTENANCE[{job!r}]: schedule: {exc}") from None
        hook = _resolve(job, str(config["hook"]))
        specs.append(
            ScheduleSpec(
                name=PREFIX + job,
                function=str(config["hook"]),
                timing=timing,
                kwargs=dict(config["options"]),
                misfire=Misfire.ONCE,
                source="maintenance",
                local=_runner(job, hook, dict(config["options"])),
            )
        )
    return specs


def _runner(job: str, hook: Callable[..., Any], options: dict[str, Any]) -> Callable[[], object]:
    def run() -> object:
        result = hook(**options)
        logger.info("maintenance job %s done: %s", job, result)
        return result

    return run


#: What ``requeue_expired_leases`` recovers: {what: (the Django app it needs, hook)}.
RECOVERY_HOOKS = {
    "messages": ("pygigo.adapters.db", "pygigo.adapters.db.maintenance.requeue_expired"),
    "invocations": ("pygigo.django_site", "pygigo.django_site.heartbeat.recover_stuck"),
}


def requeue_expired_leases() -> dict[str, int]:
    """Deliver again what a dead worker held: db:// messages whose lease expired, and
    invocations stuck in ``running`` whose heartbeat stopped. Returns how many of each (parts
    that are not installed are left out)."""
    counts = {}
    for what, (app, path) in RECOVERY_HOOKS.items():
        if apps.is_installed(app):  # importing a model of an app not installed would raise
            counts[what] = int(_resolve("requeue_expired_leases", path)())
    return counts


def report_dead_letters(broker: PygigoBroker | None = None) -> dict[str, int]:
    """Log the number of dead-lettered messages per queue of the loaded functions (a warning
    when any queue has some); returns {queue: count} for the queues that could be read."""
    broker = broker or runtime.get_broker()
    counts: dict[str, int] = {}
    for queue in sorted(registry.queues()):
        try:
            counts[queue] = broker.queue_stats(queue).dead
        except NotImplementedError:
            logger.debug("dead letters: the %s:// broker cannot count them", broker.scheme)
            return counts
        except PygigoError as exc:
            logger.warning("dead letters: cannot read queue %s: %s", queue, exc)
    dead = {queue: n for queue, n in counts.items() if n}
    if dead:
        logger.warning("dead letters: %s", ", ".join(f"{queue}={n}" for queue, n in sorted(dead.items())))
    else:
        logger.info("dead letters: none in %d queue(s)", len(counts))
    return counts

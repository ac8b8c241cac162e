"""``manage.py check`` hooks, also run when ``pygigo worker``/``scheduler``/``dev`` start:
misconfigurations that would otherwise fail silently or late, each with an id and a hint.

=============  ==========================================================================
pygigo.E001    PYGIGO_BROKER_URL is invalid (scheme, options, missing driver)
pygigo.E002    a PYGIGO_FUNCTIONS module does not import
pygigo.E003    the signing key is missing, or a public default while DEBUG is off
pygigo.E004    PYGIGO_MAINTENANCE is invalid
pygigo.E005    PYGIGO_METRICS is invalid, or on without prometheus_client
pygigo.W001    invocation tracking is not active in this process's broker
pygigo.W002    PYGIGO_MAX_BODY_BYTES is above the broker's message size, without claim checks
pygigo.W003    a schedule names a function no loaded module defines (it fails at each firing)
pygigo.W004    the rate limit counts in a per-process cache (each web process allows the full rate)
pygigo.W005    the broker is not durable (memory://) while DEBUG is off: nothing leaves the process
pygigo.I001    a built-in maintenance job is skipped: the app it needs is not installed
=============  ==========================================================================

Database schedules are read only when the check is run for a database (``manage.py check
--database default``, and at scheduler start).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.db import DatabaseError
from django.utils.module_loading import import_string

from pygigo.adapters.base import ConfigurationError, PygigoBroker, PygigoError, build_broker
from pygigo.platform import maintenance, metrics, runtime
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.registry import registry
from pygigo.platform.schedules import ScheduleSpec, schedules
from pygigo.platform.worker import import_modules

from .apps import TRACKER


@checks.register(checks.Tags.compatibility)
def check_broker_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Parse PYGIGO_BROKER_URL and load its adapter (no connection is opened); then compare
    the HTTP body limit with what the broker carries, and warn of a broker that is not durable
    outside DEBUG (the default memory:// in a deployment that forgot to set the URL)."""
    url = pygigo_settings.broker_url()
    try:
        broker = build_broker(url)
    except PygigoError as exc:
        return [checks.Error(str(exc), hint="Fix PYGIGO_BROKER_URL.", id="pygigo.E001")]
    try:
        return _check_body_size(broker) + _check_durable(broker)
    finally:
        broker.close()


def _check_durable(broker: PygigoBroker) -> list[checks.CheckMessage]:
    if broker.capabilities.durable or django_settings.DEBUG:
        return []
    return [
        checks.Warning(
            f"The {broker.scheme}:// broker is not durable: messages live in this process only, so "
            "workers in other processes never see them and a restart loses them.",
            hint="Set PYGIGO_BROKER_URL to a durable broker (redis://, amqp://, sqs:// or db://); "
            "memory:// is for tests and `pygigo dev`.",
            id="pygigo.W005",
        )
    ]


def _check_body_size(broker: PygigoBroker) -> list[checks.CheckMessage]:
    limit = broker.capabilities.max_message_bytes
    max_body = int(pygigo_settings.setting("PYGIGO_MAX_BODY_BYTES", 1024 * 1024))
    if limit is None or max_body <= limit or pygigo_settings.setting("PYGIGO_CLAIM_CHECK_DIR"):
        return []
    return [
        checks.Warning(
            f"PYGIGO_MAX_BODY_BYTES ({max_body}) is above what the {broker.scheme}:// broker carries in "
            f"one message ({limit} bytes): larger requests are accepted by size and then refused (413).",
            hint="Set PYGIGO_CLAIM_CHECK_DIR (a directory shared by web and workers) so large bodies "
            f"travel by claim check, or lower PYGIGO_MAX_BODY_BYTES to {limit} or less.",
            id="pygigo.W002",
        )
    ]


@checks.register()
def check_functions_modules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for module in pygigo_settings.functions_modules():
        try:
            import_modules([module])
        except PygigoError as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint="Fix PYGIGO_FUNCTIONS: dotted module paths, importable from the project.",
                    id="pygigo.E002",
                )
            )
    return errors


@checks.register()
def check_tracking(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The invocation tracker must be in this process's broker, or accepted invocations stay
    ``queued`` forever however the worker ends them."""
    broker = runtime.active_broker()
    if broker is None:
        active = TRACKER in pygigo_settings.middleware_paths()
    else:
        tracker = import_string(TRACKER)
        active = any(isinstance(m, tracker) for m in broker.middleware)
    if active:
        return []
    return [
        checks.Warning(
            "Invocation tracking is not active: invocations accepted over HTTP or with fn.invoke() "
            "will never be reported finished.",
            hint="Build the broker with pygigo.platform.runtime.get_broker() (it adds the tracker), "
            "not by hand.",
            id="pygigo.W001",
        )
    ]


@checks.register()
def check_maintenance(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        skipped = maintenance.skipped_jobs(pygigo_settings.maintenance_overrides())
    except PygigoError as exc:
        return [checks.Error(str(exc), hint="Fix PYGIGO_MAINTENANCE.", id="pygigo.E004")]
    return [
        checks.Info(
            f"Maintenance job {job!r} is skipped: it needs the app {app!r}, which is not installed.",
            hint=f"Nothing to do if you do not use it; otherwise add {app!r} to INSTALLED_APPS, or "
            f"switch the job off: PYGIGO_MAINTENANCE = {{{job!r}: False}}.",
            id="pygigo.I001",
        )
        for job, app in skipped.items()
    ]


@checks.register()
def check_schedules(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    specs: list[ScheduleSpec] = list(schedules)
    if databases and "default" in databases:
        specs += _database_schedules()
    return [
        checks.Warning(
            f"Schedule {spec.name!r} ({spec.source}) runs {spec.function!r}, which no loaded module defines.",
            hint="Add the module that defines it to PYGIGO_FUNCTIONS (or the command line), or fix the "
            "schedule's function name.",
            id="pygigo.W003",
        )
        for spec in specs
        if spec.enabled and registry.get(spec.function) is None
    ]


def _database_schedules() -> list[ScheduleSpec]:
    from django.apps import apps

    if not apps.is_installed("pygigo.django_site.scheduling"):
        return []
    from .scheduling.store import DjangoScheduleStore

    try:
        return DjangoScheduleStore().load_schedules()
    except DatabaseError:
        return []  # not migrated yet: the scheduler's own start says what to run


@checks.register(checks.Tags.security)
def check_signing_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Outside DEBUG, a public or missing signing key would let anyone forge messages."""
    try:
        pygigo_settings.signing_keys()
    except ConfigurationError as exc:
        return [
            checks.Error(str(exc), hint="Set DJANGO_SECRET_KEY or PYGIGO_SIGNING_KEYS.", id="pygigo.E003")
        ]
    return []


@checks.register(checks.Tags.caches)
def check_rate_limit_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A per-process cache counts each web process separately: the limit is multiplied."""
    from django.conf import settings

    from .api.auth import rate_limit_cache_alias

    if not pygigo_settings.setting("PYGIGO_RATE_LIMIT") or settings.DEBUG:
        return []
    backend = settings.CACHES.get(rate_limit_cache_alias(), {}).get("BACKEND", "")
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [
            checks.Warning(
                f"PYGIGO_RATE_LIMIT counts in a per-process cache ({backend}): every web process "
                "allows the full rate.",
                hint="Point PYGIGO_RATE_LIMIT_CACHE at a shared cache (Redis, Memcached or the database).",
                id="pygigo.W004",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility)
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """PYGIGO_METRICS: only known keys, and prometheus_client installed when switched on."""
    try:
        enabled = metrics.config().enabled
    except PygigoError as exc:
        return [checks.Error(str(exc), hint="Fix PYGIGO_METRICS.", id="pygigo.E005")]
    if enabled and importlib.util.find_spec("prometheus_client") is None:
        return [
            checks.Error(
                "PYGIGO_METRICS is enabled but prometheus_client is not installed.",
                hint="pip install 'pygigo[metrics]', or switch metrics off.",
                id="pygigo.E005",
            )
        ]
    return []

"""Pygigo's settings, read from the environment first, then Django settings.

The environment wins so that one deployment artefact runs against any broker
(``PYGIGO_BROKER_URL=sqs://… pygigo worker …``) without editing settings files.

Settings:
  PYGIGO_BROKER_URL   the broker, by URL (default ``memory://``)
  PYGIGO_MIDDLEWARE   dotted paths of extra Dramatiq middleware classes, appended to
                      Dramatiq's defaults (the Django site adds invocation tracking this way,
                      so the platform never imports the site)
  PYGIGO_SIGNING_KEYS envelope HMAC keys, newest first (default: derived from SECRET_KEY)
  PYGIGO_FUNCTIONS    modules defining functions, for processes without a command line
  PYGIGO_SCHEDULE_STORE, PYGIGO_SCHEDULER, PYGIGO_MAINTENANCE   the scheduler (see below)
  PYGIGO_METRICS      Prometheus metrics (off by default; see pygigo.platform.metrics)
  PYGIGO_HEARTBEAT_DIR, PYGIGO_HEARTBEAT_STALE_S   worker liveness files (see .liveness)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
from typing import Any

DEFAULT_BROKER_URL = "memory://"


def setting(name: str, default: Any = None) -> Any:
    """``name`` from the environment, else from Django settings (if configured), else default."""
    if name in os.environ:
        return os.environ[name]
    from django.conf import settings

    if settings.configured:
        return getattr(settings, name, default)
    return default


def broker_url() -> str:
    return str(setting("PYGIGO_BROKER_URL") or DEFAULT_BROKER_URL)


def middleware_paths() -> list[str]:
    value = setting("PYGIGO_MIDDLEWARE") or []
    if isinstance(value, str):
        value = [path for path in value.split(",") if path.strip()]
    return [str(path).strip() for path in value]


def signing_keys() -> list[str]:
    """``PYGIGO_SIGNING_KEYS`` (newest first; a comma-separated string in the environment), or
    one key derived from Django's SECRET_KEY, so a fresh project signs without extra set-up.

    Derived rather than SECRET_KEY itself: an envelope key that leaks must not also forge
    Django sessions and password-reset tokens.
    """
    value = setting("PYGIGO_SIGNING_KEYS")
    if isinstance(value, str):
        value = [key.strip() for key in value.split(",") if key.strip()]
    if value:
        return [str(key) for key in value]
    secret = setting("SECRET_KEY")
    if not secret:
        from ..adapters.base import ConfigurationError

        raise ConfigurationError(
            "No envelope signing key: set PYGIGO_SIGNING_KEYS (a list, newest first) or SECRET_KEY."
        )
    return [hmac.new(str(secret).encode(), b"pygigo.envelope.v1", hashlib.sha256).hexdigest()]


DEFAULT_SCHEDULE_STORE = "pygigo.django_site.scheduling.store.DjangoScheduleStore"


def schedule_store_path() -> str:
    """``PYGIGO_SCHEDULE_STORE``: dotted path of the scheduler's store class (a dotted path,
    so the platform never imports the Django site; the default is the site's database store)."""
    return str(setting("PYGIGO_SCHEDULE_STORE") or DEFAULT_SCHEDULE_STORE)


def _mapping(name: str) -> dict[str, Any]:
    value = setting(name) or {}
    if isinstance(value, str):  # from the environment: JSON
        import json

        value = json.loads(value)
    return dict(value)


def maintenance_overrides() -> dict[str, Any]:
    """``PYGIGO_MAINTENANCE``: per-job overrides of the built-in maintenance jobs."""
    return _mapping("PYGIGO_MAINTENANCE")


def scheduler_options() -> dict[str, Any]:
    """``PYGIGO_SCHEDULER``: keyword arguments of the Scheduler (lease_s, poll_s, grace_s, ...)."""
    return _mapping("PYGIGO_SCHEDULER")


def functions_modules() -> list[str]:
    """``PYGIGO_FUNCTIONS``: modules that define functions, imported where a process needs the
    registry without naming modules on a command line (e.g. the admin validating a schedule)."""
    value = setting("PYGIGO_FUNCTIONS") or []
    if isinstance(value, str):
        value = value.split(",")
    return [str(module).strip() for module in value if str(module).strip()]


def metrics_options() -> dict[str, Any]:
    """``PYGIGO_METRICS``: ``{"enabled": True, ...}`` switches Prometheus metrics on."""
    return _mapping("PYGIGO_METRICS")


def heartbeat_dir() -> str:
    """``PYGIGO_HEARTBEAT_DIR``: where worker processes keep their liveness files
    (default ``<temp dir>/pygigo-heartbeats``; an empty string turns them off)."""
    value = setting("PYGIGO_HEARTBEAT_DIR")
    return os.path.join(tempfile.gettempdir(), "pygigo-heartbeats") if value is None else str(value)


def heartbeat_stale_s() -> float:
    """``PYGIGO_HEARTBEAT_STALE_S``: seconds after which a worker whose consumers stopped
    fetching counts as stuck (default 60; longer than the slowest broker's long poll)."""
    return float(setting("PYGIGO_HEARTBEAT_STALE_S") or 60.0)

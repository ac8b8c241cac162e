"""Pygigo's settings, read from the environment first, then Django settings.

The environment wins so that one deployment artefact runs against any broker
(``PYGIGO_BROKER_URL=sqs://… pygigo worker …``) without editing settings files.

Settings:
  PYGIGO_BROKER_URL   the broker, by URL (default ``memory://``)
  PYGIGO_MIDDLEWARE   dotted paths of extra Dramatiq middleware classes, appended to
                      Dramatiq's defaults and to the middleware installed apps registered with
                      :func:`register_middleware` (the Django app's invocation tracking: the
                      platform never imports the site, and a user's list never replaces it)
  PYGIGO_SIGNING_KEYS envelope HMAC keys, newest first (default: derived from SECRET_KEY)
  PYGIGO_FUNCTIONS    modules defining functions, for processes without a command line
  PYGIGO_SCHEDULE_STORE, PYGIGO_SCHEDULER, PYGIGO_MAINTENANCE   the scheduler (see below)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

DEFAULT_BROKER_URL = "memory://"
#: The Django project a process runs when DJANGO_SETTINGS_MODULE names none (by dotted path:
#: the platform never imports the site).
DEFAULT_DJANGO_SETTINGS = "pygigo.default_site.settings"

_registered_middleware: list[str] = []


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


def register_middleware(path: str) -> None:
    """Install the worker middleware at ``path`` in every broker this process builds (called
    by an app's ``ready()``; idempotent)."""
    if path not in _registered_middleware:
        _registered_middleware.append(path)


def middleware_paths() -> list[str]:
    """The registered middleware, then ``PYGIGO_MIDDLEWARE`` (duplicates dropped)."""
    value = setting("PYGIGO_MIDDLEWARE") or []
    if isinstance(value, str):
        value = [path for path in value.split(",") if path.strip()]
    paths = [*_registered_middleware, *(str(path).strip() for path in value)]
    return list(dict.fromkeys(paths))


def ensure_django() -> None:
    """Configure Django if nothing did yet: ``DJANGO_SETTINGS_MODULE``, else Pygigo's default
    site. Every process (worker, scheduler, web, a plain ``python -c`` producer) then reads the
    same settings: the same broker, signing keys and database."""
    from django.conf import settings

    if settings.configured:
        return
    module = os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_DJANGO_SETTINGS)
    import django

    try:
        django.setup()
    except ModuleNotFoundError as exc:
        if not exc.name or not module.startswith(exc.name):
            raise  # something the settings import is missing: its own message says what
        from ..adapters.base import ConfigurationError

        raise ConfigurationError(
            f"DJANGO_SETTINGS_MODULE={module!r} cannot be imported ({exc}): run from the directory "
            "that contains it (or add it to PYTHONPATH), or unset it to use Pygigo's default site."
        ) from exc


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

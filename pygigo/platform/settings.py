"""Pygigo's settings, read from the environment first, then Django settings.

The environment wins so that one deployment artefact runs against any broker
(``PYGIGO_BROKER_URL=sqs://… pygigo worker …``) without editing settings files.

Settings:
  PYGIGO_BROKER_URL   the broker, by URL (default ``memory://``)
  PYGIGO_MIDDLEWARE   dotted paths of extra Dramatiq middleware classes, appended to
                      Dramatiq's defaults and to the middleware installed apps registered with
                      :func:`register_middleware` (the Django app's invocation tracking: the
                      platform never imports the site, and a user's list never replaces it)
  PYGIGO_RESULTS      where return values are stored, by URL (see .results; none by default)
  PYGIGO_GROUP_CALLBACKS  where groups count finished members (default: PYGIGO_RESULTS' URL)
  PYGIGO_SIGNING_KEYS message HMAC keys, newest first (default: derived from SECRET_KEY;
                      outside DEBUG the development default is refused)
  PYGIGO_UNSIGNED_QUEUES  queues whose workers also run unsigned (plain Dramatiq) messages
  PYGIGO_MESSAGE_TTL_S    how long a message stays valid after it is due (default 14 days)
  PYGIGO_FORWARD_HEADERS  request headers an http envelope carries (default: envelope.headers)
  PYGIGO_FUNCTIONS    modules defining functions, for processes without a command line
  PYGIGO_SCHEDULE_STORE, PYGIGO_SCHEDULER, PYGIGO_MAINTENANCE   the scheduler (see below)
  PYGIGO_METRICS      Prometheus metrics (off by default; see pygigo.platform.metrics)
  PYGIGO_HEARTBEAT_DIR, PYGIGO_HEARTBEAT_STALE_S   worker liveness files (see .liveness)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.signals import setting_changed

from .envelope.headers import DEFAULT_FORWARD_HEADERS
from .envelope.signing import Signer

DEFAULT_BROKER_URL = "memory://"
#: The Django project a process runs when DJANGO_SETTINGS_MODULE names none (by dotted path:
#: the platform never imports the site).
DEFAULT_DJANGO_SETTINGS = "pygigo.default_site.settings"

_registered_middleware: list[str] = []
#: The default site's SECRET_KEY: fine for ``pygigo dev``, public everywhere else.
DEV_SECRET_KEY = "pygigo-dev-insecure-change-me"
#: SQS keeps a message at most 14 days; a signature should not die before the queue drops it.
DEFAULT_MESSAGE_TTL_S = 14 * 24 * 3600


def setting(name: str, default: Any = None) -> Any:
    """``name`` from the environment, else from Django settings (if configured), else default."""
    if name in os.environ:
        return os.environ[name]
    from django.conf import settings

    if settings.configured:
        return getattr(settings, name, default)
    return default


_T = TypeVar("_T")
_memos: list[Any] = []


def cached(reader: Callable[[], _T]) -> Callable[[], _T]:
    """``reader`` (no arguments) memoised: for settings read on every request or message,
    where reading them again (environment, Django settings, parsing) was a measurable part of
    the work. Read once per process, and again after a test overrides a Django setting
    (``setting_changed``); a changed environment variable needs a restart. An exception is
    not remembered: the next call reads again."""
    memo = functools.cache(reader)
    _memos.append(memo)
    return memo


def _forget_cached(**kwargs: Any) -> None:
    for memo in _memos:
        memo.cache_clear()


setting_changed.connect(_forget_cached)


def broker_url() -> str:
    return str(setting("PYGIGO_BROKER_URL") or DEFAULT_BROKER_URL)


def results_url() -> str | None:
    """``PYGIGO_RESULTS``: the result backend's URL, or None (return values are dropped)."""
    return str(setting("PYGIGO_RESULTS") or "") or None


def group_callbacks_url() -> str | None:
    """``PYGIGO_GROUP_CALLBACKS``, else the result backend's URL without its options (a group
    waits for its members' results, so the same store is the natural default)."""
    configured = str(setting("PYGIGO_GROUP_CALLBACKS") or "")
    if configured:
        return configured
    results = results_url()
    return results.split("?", 1)[0] if results else None


def register_middleware(path: str) -> None:
    """Install the worker middleware at ``path`` in every broker this process builds (called
    by an app's ``ready()``; idempotent)."""
    if path not in _registered_middleware:
        _registered_middleware.append(path)


def middleware_paths() -> list[str]:
    """The registered middleware, then ``PYGIGO_MIDDLEWARE`` (duplicates dropped)."""
    return list(dict.fromkeys([*_registered_middleware, *_list("PYGIGO_MIDDLEWARE")]))


def _list(name: str) -> list[str]:
    """A list setting; in the environment a comma-separated string."""
    value = setting(name) or []
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip() for item in value if str(item).strip()]


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
    """``PYGIGO_SIGNING_KEYS`` (newest first), or one key derived from Django's SECRET_KEY.

    Derived rather than SECRET_KEY itself: a message key that leaks must not also forge
    Django sessions and password-reset tokens. Outside DEBUG a key derived from a public
    default (the default site's, Django's ``django-insecure-`` ones) is refused: anyone could
    forge messages with it.
    """
    from ..adapters.base import ConfigurationError

    keys = _list("PYGIGO_SIGNING_KEYS")
    if keys:
        return keys
    secret = str(setting("SECRET_KEY") or "")
    if not secret:
        raise ConfigurationError(
            "No message signing key: set PYGIGO_SIGNING_KEYS (a list, newest first) or SECRET_KEY."
        )
    if (secret == DEV_SECRET_KEY or secret.startswith("django-insecure-")) and not _django_debug():
        raise ConfigurationError(
            "SECRET_KEY is a public development default and DEBUG is off: set DJANGO_SECRET_KEY "
            "(or PYGIGO_SIGNING_KEYS) to a long random secret shared by every web and worker process."
        )
    return [hmac.new(secret.encode(), b"pygigo.envelope.v1", hashlib.sha256).hexdigest()]


@cached
def signer() -> Signer:
    """The first of :func:`signing_keys`, keyed once, for sealing envelopes."""
    return Signer(signing_keys())


def _django_debug() -> bool:
    from django.conf import settings

    return bool(settings.configured and settings.DEBUG)


@cached
def forward_headers() -> frozenset[str]:
    """``PYGIGO_FORWARD_HEADERS``: the request headers (case-insensitive) an http envelope
    may carry; credentials additionally need the function's ``forward_secrets``."""
    configured = _list("PYGIGO_FORWARD_HEADERS")
    return frozenset(name.lower() for name in configured) if configured else DEFAULT_FORWARD_HEADERS


def unsigned_queues() -> frozenset[str]:
    """``PYGIGO_UNSIGNED_QUEUES``: queues on which workers accept plain Dramatiq messages
    (interop with producers that do not sign); empty by default."""
    return frozenset(_list("PYGIGO_UNSIGNED_QUEUES"))


def message_ttl_s() -> float:
    """``PYGIGO_MESSAGE_TTL_S``: a message is refused this long after it was due."""
    return float(setting("PYGIGO_MESSAGE_TTL_S") or DEFAULT_MESSAGE_TTL_S)


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
    return _list("PYGIGO_FUNCTIONS")


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

"""The process's broker: built once from settings, shared by every function.

``get_broker()`` is the hot path of every ``send``: after the first call it is one global
read. ``set_broker()`` replaces it (tests, or a process serving another URL) and re-binds every
registered function to the new broker.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from django.utils.module_loading import import_string
from dramatiq.middleware import Middleware, default_middleware

from ..adapters.base import ConfigurationError, PygigoBroker, build_broker
from . import settings
from .registry import registry

_broker: PygigoBroker | None = None
_lock = threading.Lock()


class _DiscardedResultFilter(logging.Filter):
    """Drops Dramatiq's per-message warning that a return value was discarded for lack of its
    Results middleware: Pygigo stores the results of tracked invocations itself, and
    ``fn.send()`` is fire-and-forget by design, so the warning would fire on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "haven't added the Results middleware" not in record.getMessage()


logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_DiscardedResultFilter())


def build_middleware() -> list[Middleware]:
    """Pygigo's message guard first (nothing acts on a message before it is verified, and
    everything enqueued is signed), Dramatiq's default middleware, the poison guard, stored
    results and group callbacks when configured (:mod:`.results`), the classes installed apps
    registered and those named in ``PYGIGO_MIDDLEWARE`` (so storage middleware
    sees only verified envelopes), then the worker heartbeat and, when switched on, metrics
    (last: they count only what runs)."""
    from . import liveness, metrics, results
    from .guard import MessageGuard
    from .poison import PoisonGuard

    middleware: list[Middleware] = [MessageGuard(), *(cls() for cls in default_middleware), PoisonGuard()]
    middleware += results.middleware()
    for path in settings.middleware_paths():
        try:
            cls = import_string(path)
        except ImportError as exc:
            raise ConfigurationError(f"PYGIGO_MIDDLEWARE entry {path!r} cannot be imported: {exc}") from exc
        middleware.append(cls())
    heartbeat = liveness.heartbeat_middleware()
    if heartbeat is not None:
        middleware.append(heartbeat)
    families = metrics.families()
    if families is not None:
        from .metrics.middleware import MetricsMiddleware

        middleware.append(MetricsMiddleware(families))
    return middleware


def get_broker() -> PygigoBroker:
    """The broker this process sends to and consumes from, built on first use (configuring
    Django first if nothing did, so a plain producer process reads the same settings)."""
    broker = _broker
    if broker is None:
        settings.ensure_django()
        with _lock:
            broker = _broker
            if broker is None:
                broker = build_broker(settings.broker_url(), middleware=build_middleware())
                set_broker(broker)
    return broker


def set_broker(broker: PygigoBroker) -> None:
    """Make ``broker`` the process's broker (also Dramatiq's global one) and bind every
    registered function to it."""
    global _broker
    _broker = broker
    dramatiq.set_broker(broker)
    registry.bind_all(broker)
    from . import invocations  # imports this module: bound late to avoid the cycle

    invocations.bind(broker)


def active_broker() -> PygigoBroker | None:
    """The broker if one was built already, without building one."""
    return _broker


def reset() -> None:
    """Forget the broker (closing it). The next ``get_broker()`` builds a new one."""
    global _broker
    with _lock:
        if _broker is not None:
            _broker.close()
        _broker = None

"""Prometheus metrics of every Pygigo process, off unless ``PYGIGO_METRICS`` switches them on.

Settings (``PYGIGO_METRICS``, a dict; JSON in the environment)::

    PYGIGO_METRICS = {
        "enabled": True,         # default False: no metric is created, nothing is recorded
        "port": 9191,            # workers and schedulers serve /metrics here (None: no port)
        "host": "127.0.0.1",     # where that port listens
        "token": "…",            # bearer token for the web process's /metrics (staff always may)
    }

Several processes (gunicorn workers, Dramatiq worker processes) use prometheus_client's
multiprocess mode, switched on by ``PROMETHEUS_MULTIPROC_DIR`` exactly as prometheus_client
defines it: every process writes its samples there and a scrape sums them. ``pygigo worker``
sets it for its processes when it is unset. Every metric is listed in ``docs/metrics.md``.

Callers record through :func:`families`, which is None while metrics are off, so a process
with metrics off pays one global read per event.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...adapters.base import ConfigurationError
from .. import settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Seconds; from a no-op (~1 ms) to the default 10-minute time limit.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, float("inf"))
BY_FUNCTION = ("function", "queue")


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    port: int | None = 9191
    host: str = "127.0.0.1"
    token: str | None = None


def config() -> MetricsConfig:
    options = settings.metrics_options()
    known = {field.name for field in dataclasses.fields(MetricsConfig)}
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(
            f"PYGIGO_METRICS: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}."
        )
    return MetricsConfig(**options)


class Families:
    """Every metric Pygigo records, in a registry of its own (scrapes add the live
    collectors: queue depth, outbox backlog)."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:
            raise ConfigurationError(
                "PYGIGO_METRICS is enabled but prometheus_client is missing: pip install 'pygigo[metrics]'."
            ) from exc
        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = BY_FUNCTION) -> Any:
            return Counter(name, doc, labels, registry=r)

        self.enqueued = counter("pygigo_messages_enqueued", "Messages sent to the broker.")
        self.started = counter("pygigo_messages_started", "Runs started by a worker.")
        self.succeeded = counter("pygigo_messages_succeeded", "Runs that returned.")
        self.failed = counter("pygigo_messages_failed", "Runs that raised (each attempt counts).")
        self.retried = counter("pygigo_messages_retried", "Failed runs that will be retried.")
        self.dead_lettered = counter(
            "pygigo_messages_dead_lettered", "Messages given up: dead-lettered after their last attempt."
        )
        self.cancelled = counter("pygigo_invocations_cancelled", "Invocations cancelled before they ran.")
        self.run_seconds = Histogram(
            "pygigo_run_seconds",
            "Run time of one attempt.",
            BY_FUNCTION,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "pygigo_latency_seconds",
            "End-to-end latency: accepted (sent) to finished.",
            BY_FUNCTION,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        # livesum: a dead process's in-flight count disappears with it.
        self.in_flight = Gauge(
            "pygigo_messages_in_flight",
            "Runs in progress.",
            BY_FUNCTION,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.http_requests = counter(
            "pygigo_http_requests", "API requests answered.", ("route", "method", "status")
        )
        self.http_wait = counter(
            "pygigo_http_prefer_wait", "Prefer: wait requests: answered, or fell back to 202.", ("outcome",)
        )
        self.scheduler_leader = Gauge(
            "pygigo_scheduler_leader",
            "1 while this scheduler holds the lease.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.slots_fired = counter("pygigo_scheduler_slots_fired", "Schedule slots enqueued.", ("schedule",))
        self.misfires = counter(
            "pygigo_scheduler_misfires",
            "Slots missed while no leader ran: skipped, or caught up late.",
            ("schedule", "outcome"),
        )
        self.lease_renew_failures = counter(
            "pygigo_scheduler_lease_renew_failures", "Lease renewals that failed (store unreachable).", ()
        )


_families: Families | None = None
_resolved = False
_lock = threading.Lock()
_scrape_hooks: list[Callable[[], None]] = []


def on_scrape(hook: Callable[[], None]) -> None:
    """Run ``hook`` before this process collects its metrics (tallies apply what waits)."""
    _scrape_hooks.append(hook)


def before_scrape() -> None:
    for hook in list(_scrape_hooks):
        hook()


def families() -> Families | None:
    """The metric families, or None when metrics are off. Built once per process."""
    global _families, _resolved
    if not _resolved:
        with _lock:
            if not _resolved:
                _families = Families() if config().enabled else None
                _resolved = True
    return _families


def reset() -> None:
    """Forget the families (tests switch metrics on and off)."""
    global _families, _resolved
    with _lock:
        _families, _resolved = None, False
        _scrape_hooks.clear()

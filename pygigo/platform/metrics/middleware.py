"""The Dramatiq middleware that records per-function metrics in every process that sends or
runs messages (installed by ``runtime.build_middleware`` when metrics are on).

Labels: ``function`` is the Pygigo function (for an envelope message, the one the envelope
names — verified on the worker, read unverified on the sending side only where the
registry knows the name, else ``"unknown"``, so a forged message cannot grow the label set);
``queue`` is the canonical queue (no ``.DQ``/``.XQ`` suffix).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from .. import invocations
from ..registry import registry
from . import Families

UNKNOWN = "unknown"


def _claimed_function(message: Any) -> str:
    """The function an envelope message names, without verifying it (labels only)."""
    try:
        name = json.loads(message.args[0])["function"]
    except (IndexError, TypeError, ValueError, KeyError):
        return UNKNOWN
    return name if isinstance(name, str) and registry.get(name) is not None else UNKNOWN


def labels_of(message: Any, *, running: bool = True) -> tuple[str, str]:
    """(function, queue) of ``message``. ``running``: the message this worker thread is
    processing, whose envelope the guard verified (a message being *sent* from inside a run
    is another one: its own claim is read)."""
    if message.actor_name == invocations.ENVELOPE_ACTOR:
        envelope = invocations.current().envelope if running else None
        function = envelope.function if envelope is not None else _claimed_function(message)
    else:
        function = message.actor_name
    return function, q_name(message.queue_name)


class _Series:
    """The labelled children of one (function, queue), looked up once: ``labels()`` costs
    more than the update itself, and this runs several times per message."""

    def __init__(self, families: Families, labels: tuple[str, str]) -> None:
        self.enqueued = families.enqueued.labels(*labels)
        self.started = families.started.labels(*labels)
        self.succeeded = families.succeeded.labels(*labels)
        self.failed = families.failed.labels(*labels)
        self.retried = families.retried.labels(*labels)
        self.dead_lettered = families.dead_lettered.labels(*labels)
        self.run_seconds = families.run_seconds.labels(*labels)
        self.latency_seconds = families.latency_seconds.labels(*labels)
        self.in_flight = families.in_flight.labels(*labels)


class MetricsMiddleware(Middleware):
    """Counts, times and gauges each message's life cycle (see docs/metrics.md)."""

    def __init__(self, families: Families) -> None:
        self.families = families
        self._series: dict[tuple[str, str], _Series] = {}
        # message id -> (its series, perf_counter at start); a worker thread runs one message.
        self._running: dict[str, tuple[_Series, float]] = {}

    def series(self, labels: tuple[str, str]) -> _Series:
        found = self._series.get(labels)
        if found is None:  # two threads may both build it: labels() returns the same children
            found = self._series[labels] = _Series(self.families, labels)
        return found

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        # Retries re-enqueue with a "retries" option: counted as retried, not as sent again.
        if "retries" not in message.options:
            self.series(labels_of(message, running=False)).enqueued.inc()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        series = self.series(labels_of(message))
        self._running[message.message_id] = (series, time.perf_counter())
        series.started.inc()
        series.in_flight.inc()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        running = self._running.pop(message.message_id, None)
        if running is None:
            return
        series, started = running
        series.in_flight.dec()
        series.run_seconds.observe(time.perf_counter() - started)
        if exception is None and not message.failed:
            series.succeeded.inc()
        else:
            series.failed.inc()
            if invocations.will_retry(broker, message, exception):
                series.retried.inc()
                return
        series.latency_seconds.observe(max(0.0, time.time() - _accepted_at(message)))

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        running = self._running.pop(message.message_id, None)
        if running is not None:  # skipped after it counted as started (duplicate, cancelled)
            running[0].in_flight.dec()

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self.series(labels_of(message)).dead_lettered.inc()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            # Drops this process's live gauges (in flight) from the sums.
            multiprocess.mark_process_dead(os.getpid())


def _accepted_at(message: Any) -> float:
    """When the work was accepted: the envelope's enqueue time (an outbox relay sends it
    later), else when the message was created."""
    envelope = invocations.current().envelope
    if envelope is not None and message.actor_name == invocations.ENVELOPE_ACTOR:
        return float(envelope.enqueued_at)
    return float(message.message_timestamp) / 1000

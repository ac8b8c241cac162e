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
from .tally import Labels, Tally

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


class MetricsMiddleware(Middleware):
    """Counts, times and gauges each message's life cycle (see docs/metrics.md), through
    the process's :class:`.tally.Tally`."""

    def __init__(self, families: Families) -> None:
        self.tally = Tally(families)
        # message id -> (labels, perf_counter at start); a worker thread runs one message.
        self._running: dict[str, tuple[Labels, float]] = {}

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        # Retries re-enqueue with a "retries" option: counted as retried, not as sent again.
        if "retries" not in message.options:
            self.tally.add(labels_of(message, running=False), "enqueued")

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        labels = labels_of(message)
        self._running[message.message_id] = (labels, time.perf_counter())
        self.tally.start(labels)

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
        labels, started = running
        run_s = time.perf_counter() - started
        if exception is None and not message.failed:
            counted: tuple[str, ...] = ("succeeded",)
        elif invocations.will_retry(broker, message, exception):
            self.tally.finish(labels, ("failed", "retried"), run_s, None)  # not finished yet
            return
        else:
            counted = ("failed",)
        self.tally.finish(labels, counted, run_s, max(0.0, time.time() - _accepted_at(message)))

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        running = self._running.pop(message.message_id, None)
        if running is not None:  # skipped after it counted as started (duplicate, cancelled)
            self.tally.add(running[0], "in_flight", -1)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self.tally.add(labels_of(message), "dead_lettered")

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.tally.flush()
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

"""Poison messages: a message whose function kills its worker process (``os._exit``, a
segfault, the out-of-memory killer) is redelivered after every death and would crash-loop the
workers forever. It may run ``max_retries + 1`` times in all, Dramatiq's retries and runs its
worker died in together; the next delivery is dead-lettered instead of run.

Who counts: for invocations (envelope messages) the Django site's tracker, through the
invocation row's ``attempts`` (on every broker); for plain ``fn.send`` messages
:class:`PoisonGuard`, through the broker's delivery count where it keeps one
(:meth:`~pygigo.adapters.base.PygigoBroker.deliveries`: db://). SQS stops a poison message by
its redrive policy.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from ..adapters.base import PygigoBroker
from .invocations import ENVELOPE_ACTOR, max_retries

logger = logging.getLogger("pygigo.worker")

WORKER_DIED = "the worker died while running it"


class WorkerDied(Exception):
    """Why a poison message was dead-lettered (recorded with the dead letter)."""


def dead_letter(message: Any, detail: str) -> None:
    """Fail ``message`` without running it; the broker dead-letters it with the reason."""
    logger.error("Message %s (%s): %s; dead-lettered", message.message_id, message.actor_name, detail)
    message.stuff_exception(WorkerDied(detail))
    message.fail()


class PoisonGuard(Middleware):
    """Dead-letters a plain message delivered more often than its retries allow."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name == ENVELOPE_ACTOR or message.failed or not isinstance(broker, PygigoBroker):
            return
        deliveries = broker.deliveries(message)
        limit = max_retries(broker, message)
        if deliveries is None or limit is None:
            return
        runs = message.options.get("retries", 0) + deliveries - 1  # before this delivery
        if runs > limit:
            dead_letter(message, f"{WORKER_DIED} ({runs} runs, max_retries={limit})")

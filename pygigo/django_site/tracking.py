"""Worker middleware that records each invocation's life cycle in the database.

Enabled through ``PYGIGO_MIDDLEWARE`` (the platform loads it by dotted path and never
imports the site). It acts only on envelope messages, after
:class:`pygigo.platform.guard.MessageGuard` verified them, so a forged message cannot touch
any row; plain ``fn.send`` messages cost one string comparison per hook.

Transitions, each one UPDATE:

* ``before_process_message``: queued/retrying → running, ``attempts += 1``. The UPDATE is
  conditional, which is also the exactly-once gate: a duplicate message (outbox relayed it
  twice) or a cancelled invocation matches no row and is skipped. A row stuck in ``running``
  longer than the function's time limit (from the registry, never from the message) is taken
  over (its worker died: at-least-once). A message whose invocation has no row (never
  recorded, or pruned since it finished) is a replay: refused and dead-lettered.
* ``after_process_message``: → succeeded (with the result); on an exception → retrying if
  Dramatiq's Retries middleware will retry it, else ``dead`` when retries were exhausted or
  ``failed`` when none were allowed (non-retryable error, ``max_retries=0``).
* ``after_skip_message``: a message the guard refused as expired, or Dramatiq's AgeLimit
  (``max_age``) skipped → dead.

Dramatiq emits ``after_*`` hooks in reverse middleware order, so this runs before Retries
and predicts its decision with :func:`pygigo.platform.invocations.will_retry`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import dramatiq
from django.db import close_old_connections
from django.db.models import F, Q
from django.utils import timezone
from dramatiq.middleware import Middleware, SkipMessage

from pygigo.platform import guard, invocations
from pygigo.platform.registry import registry

from .models import STARTABLE, Invocation, Status
from .store import notify

logger = logging.getLogger("pygigo.tracking")

DEFAULT_TIME_LIMIT_S = 600.0


def _error_text(exception: BaseException) -> str:
    return f"{type(exception).__name__}: {exception}"[:4000]


class InvocationTracker(Middleware):
    """Writes Invocation status transitions (see module docstring)."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.actor_name != invocations.ENVELOPE_ACTOR or message.failed:
            return
        envelope = invocations.current().envelope
        if envelope is None:
            return
        # Worker threads live long: drop connections that broke or aged out while idle.
        close_old_connections()
        now = timezone.now()
        stale = now - timedelta(seconds=_time_limit_s(envelope.function))
        started = Invocation.objects.filter(
            Q(status__in=STARTABLE) | Q(status=Status.RUNNING, started_at__lt=stale), id=envelope.id
        ).update(status=Status.RUNNING, attempts=F("attempts") + 1, started_at=now)
        if started:
            return
        row = Invocation.objects.filter(id=envelope.id).values_list("status", "started_at").first()
        if row is None:
            guard.refuse(
                message, f"invocation {envelope.id} is unknown here (pruned or never recorded): a replay"
            )
        status, started_at = row
        if status == Status.RUNNING and started_at is not None:
            # Redelivered while the row says running: either a duplicate delivery, or the
            # worker that ran it died (SIGKILL) and this is the only copy left. Skipping would
            # ack it away, so look again once that run would have hit its time limit.
            recheck_ms = int((started_at - stale).total_seconds() * 1000) + 1000
            broker.enqueue(message.copy(), delay=max(1000, recheck_ms))
            logger.info(
                "Invocation %s is running elsewhere; checking again in %d ms", envelope.id, recheck_ms
            )
        else:
            logger.info("Skipping invocation %s: it is %s (duplicate or cancelled)", envelope.id, status)
        raise SkipMessage(f"invocation {envelope.id} is {status}")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if message.actor_name != invocations.ENVELOPE_ACTOR:
            return
        state = invocations.current()
        envelope = state.envelope
        if envelope is None:
            return
        try:
            self._record_outcome(broker, message, envelope.id, state, exception)
        finally:
            notify(envelope.id)

    def _record_outcome(
        self,
        broker: dramatiq.Broker,
        message: Any,
        invocation_id: str,
        state: Any,
        exception: BaseException | None,
    ) -> None:
        rows = Invocation.objects.filter(id=invocation_id)
        now = timezone.now()
        if exception is None and not message.failed:
            try:
                rows.update(status=Status.SUCCEEDED, result=state.result, error="", finished_at=now)
            except (TypeError, ValueError) as exc:  # the return value is not JSON
                rows.update(
                    status=Status.FAILED, error=f"result is not JSON-serialisable: {exc}", finished_at=now
                )
                message.fail()
            return
        if exception is None:  # failed by another middleware before it ran
            rows.update(status=Status.DEAD, error=state.refusal or "refused", finished_at=now)
            return
        if invocations.will_retry(broker, message, exception):
            rows.update(status=Status.RETRYING, error=_error_text(exception))
            return
        exhausted = message.options.get("retries", 0) > 0
        rows.update(
            status=Status.DEAD if exhausted else Status.FAILED,
            error=_error_text(exception),
            finished_at=now,
        )

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        # Skipped and failed: refused by the guard (expired) or by AgeLimit (max_age). Our
        # own skip of a duplicate or cancelled invocation leaves the message unfailed.
        envelope = invocations.current().envelope
        if message.actor_name != invocations.ENVELOPE_ACTOR or not message.failed or envelope is None:
            return
        close_old_connections()
        error = invocations.current().refusal or "max_age exceeded before it could start"
        Invocation.objects.filter(id=envelope.id, status__in=STARTABLE).update(
            status=Status.DEAD, error=error, finished_at=timezone.now()
        )
        notify(envelope.id)


def _time_limit_s(function_name: str) -> float:
    function = registry.get(function_name)
    limit = function.options.time_limit_s if function is not None else None
    return limit or DEFAULT_TIME_LIMIT_S

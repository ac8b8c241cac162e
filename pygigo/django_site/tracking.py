"""Worker middleware that records each invocation's life cycle in the database.

Enabled through ``PYGIGO_MIDDLEWARE`` (the platform loads it by dotted path and never
imports the site). It acts only on envelope messages, after :class:`EnvelopeGuard` verified
them, so a forged message cannot touch any row; plain ``fn.send`` messages cost one string
comparison per hook.

Transitions, each one UPDATE:

* ``before_process_message``: queued/retrying → running, ``attempts += 1``. The UPDATE is
  conditional, which is also the exactly-once gate: a duplicate message (outbox relayed it
  twice) or a cancelled invocation matches no row and is skipped. A row stuck in ``running``
  longer than the function's time limit is taken over (its worker died: at-least-once).
* ``after_process_message``: → succeeded (with the result); on an exception → retrying if
  Dramatiq's Retries middleware will retry it, else ``dead`` when retries were exhausted or
  ``failed`` when none were allowed (non-retryable error, ``max_retries=0``). A message the
  guard refused as expired → dead.
* ``after_skip_message``: a message skipped by Dramatiq's AgeLimit (``max_age``) → dead.

Dramatiq emits ``after_*`` hooks in reverse middleware order, so this runs before Retries
and predicts its decision with :func:`pygigo.platform.invocations.will_retry`.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from typing import Any

import dramatiq
from django.db import close_old_connections
from django.db.models import F, Q
from django.utils import timezone
from dramatiq.middleware import Middleware, SkipMessage

from pygigo.platform import invocations
from pygigo.platform.envelope import EnvelopeError

from .models import STARTABLE, Invocation, Status
from .store import notify

logger = logging.getLogger("pygigo.tracking")

DEFAULT_TIME_LIMIT_MS = 600_000


def _error_text(exception: BaseException) -> str:
    """``Type: message`` on the first line (what the API shows), then the traceback (for the
    admin and Django tasks' ``TaskResult.errors``), its innermost frames kept if too long."""
    kind = type(exception)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    head = f"{name}: {exception}"[:1000]
    trace = "".join(traceback.format_exception(exception))
    return f"{head}\n\n{trace[-(3998 - len(head)) :]}"


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
        time_limit_ms = message.options.get("time_limit") or DEFAULT_TIME_LIMIT_MS
        stale = now - timedelta(milliseconds=time_limit_ms)
        started = Invocation.objects.filter(
            Q(status__in=STARTABLE) | Q(status=Status.RUNNING, started_at__lt=stale), id=envelope.id
        ).update(status=Status.RUNNING, attempts=F("attempts") + 1, started_at=now)
        if started:
            return
        row = Invocation.objects.filter(id=envelope.id).values_list("status", "started_at").first()
        if row is None:
            # Sent by something that does not record invocations: run it untracked.
            logger.debug("Invocation %s has no row; running untracked", envelope.id)
            return
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
        if exception is None:  # refused by the guard (expired)
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
        # Only AgeLimit skips *and fails* a message before the guard ran; our own skip
        # (duplicate / cancelled) leaves the message unfailed and the row as it is.
        if message.actor_name != invocations.ENVELOPE_ACTOR or not message.failed:
            return
        try:
            envelope = invocations._verify(message.args[0] if message.args else None)
        except EnvelopeError:
            return
        close_old_connections()
        Invocation.objects.filter(id=envelope.id, status__in=STARTABLE).update(
            status=Status.DEAD, error="max_age exceeded before it could start", finished_at=timezone.now()
        )
        notify(envelope.id)

"""Worker middleware that records each invocation's life cycle in the database.

Installed by the app itself: its ``ready()`` registers this class's dotted path with the
platform (``pygigo.platform.settings.register_middleware``), which loads it into every broker
it builds and never imports the site. It acts only on envelope messages, after
:class:`pygigo.platform.guard.MessageGuard` verified them, so a forged message cannot touch
any row; plain ``fn.send`` messages cost one string comparison per hook.

Transitions, each one UPDATE:

* ``before_process_message``: queued/retrying → running, ``attempts += 1``, with this
  delivery's *holder* token and a fresh heartbeat (:mod:`.heartbeat`). The UPDATE is
  conditional, which is also the exactly-once gate. A ``running`` row is taken over only when
  its holder's heartbeat is stale (the worker died) and it has runs left; with none left
  (``attempts`` = ``max_retries + 1``: a poison message that kills its worker) it becomes
  ``dead`` ("the worker died while running it") and the message is dead-lettered. A delivery
  while the holder is alive (a duplicate) is looked at again after the stale window rather than
  acked away; one of a finished or cancelled invocation is acked without running. A message
  whose invocation has no row is first held until the accepting request's transaction ends
  (:func:`accept_settled`: the HTTP accept publishes before it commits); still none (the accept
  never committed, the row was pruned, or a replay) and it is refused and dead-lettered.
* ``after_process_message``: → succeeded (with the result); on an exception → retrying if
  Dramatiq's Retries middleware will retry it, else ``dead`` when retries were exhausted or
  ``failed`` when none were allowed (non-retryable error, ``max_retries=0``). Written only
  while this delivery still holds the row (fencing: a holder that was taken over records
  nothing).
* ``after_skip_message``: a message the guard refused as expired, or Dramatiq's AgeLimit
  (``max_age``) skipped → dead.

Dramatiq emits ``after_*`` hooks in reverse middleware order, so this runs before Retries
and predicts its decision with :func:`pygigo.platform.invocations.will_retry`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
import uuid
from typing import Any

import dramatiq
from django.db import close_old_connections, router, transaction
from django.utils import timezone
from dramatiq.middleware import Middleware, SkipMessage

from pygigo.platform import guard, invocations, poison, redaction

from . import heartbeat, transitions
from .models import STARTABLE, Invocation, Status
from .store import notify

logger = logging.getLogger("pygigo.tracking")


class _Holding(threading.local):
    """The invocation this worker thread runs: its holder token and its row as the start left
    it (None: it holds none)."""

    holder: str | None = None
    #: (id, started_at, attempts, created_at, error) of its row as the start left it.
    row: tuple[Any, ...] | None = None
    #: When this thread last checked its database connections (monotonic seconds).
    checked_at: float = float("-inf")


_holding = _Holding()

#: How often a busy worker thread checks its connections (CONN_MAX_AGE, health checks).
CONNECTION_CHECK_S = 1.0


def _check_connections() -> None:
    """Drop connections that broke or aged out, as Django does between requests, but at most
    once a second per thread: with ``CONN_HEALTH_CHECKS`` each check costs PostgreSQL a
    ``SELECT 1`` round trip, which per message was a third of a tracked run's queries. A
    connection that breaks under load fails the runs of at most that second (retried)."""
    now = time.monotonic()
    if now - _holding.checked_at >= CONNECTION_CHECK_S:
        _holding.checked_at = now
        close_old_connections()


def started_row(invocation_id: str) -> Invocation | None:
    """The row of the invocation this thread is running, as its start left it (unsaved; the
    database holds the same values), or None when this thread did not start it. Spares a
    Django task's run a read of its own row."""
    if _holding.row is None or _holding.row[0] != invocation_id or _holding.holder is None:
        return None
    _, started_at, attempts, created_at, error = _holding.row
    return Invocation(
        id=uuid.UUID(invocation_id),
        status=Status.RUNNING,
        attempts=attempts,
        created_at=created_at,
        started_at=started_at,
        heartbeat_at=started_at,
        holder=_holding.holder,
        error=error,
    )


def _error_text(exception: BaseException) -> str:
    """``Type: message`` on the first line (what the API shows), then the traceback (for the
    admin and Django tasks' ``TaskResult.errors``), its innermost frames kept if too long."""
    kind = type(exception)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    head = f"{name}: {exception}"[:1000]
    trace = "".join(traceback.format_exception(exception))
    return f"{head}\n\n{trace[-(3998 - len(head)) :]}"


def accept_settled(invocation_id: str) -> bool:
    """Wait until the transaction that accepts ``invocation_id`` (if one is in flight) ends;
    True if its row then exists.

    An INSERT of the same primary key blocks until a concurrent uncommitted INSERT commits or
    rolls back (PostgreSQL's unique-index wait; SQLite's write lock): no polling, no guessed
    timeout. The probe row is always rolled back, so a message whose accept never committed
    leaves nothing behind.
    """
    alias = router.db_for_write(Invocation)
    with transaction.atomic(using=alias):
        Invocation.objects.using(alias).bulk_create(
            [Invocation(id=invocation_id, function="", queue="")], ignore_conflicts=True
        )
        exists = Invocation.objects.using(alias).filter(id=invocation_id).exclude(function="").exists()
        transaction.set_rollback(True, using=alias)
    return exists


class InvocationTracker(Middleware):
    """Writes Invocation status transitions (see module docstring)."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        _holding.holder = _holding.row = None
        if message.actor_name != invocations.ENVELOPE_ACTOR or message.failed:
            return
        envelope = invocations.current().envelope
        if envelope is None:
            return
        _check_connections()
        now = timezone.now()
        holder = heartbeat.new_holder()
        alias = router.db_for_write(Invocation)
        start = functools.partial(
            transitions.start,
            alias,
            envelope.id,
            now=now,
            holder=holder,
            stale_before=now - heartbeat.stale_after(),
            max_retries=invocations.max_retries(broker, message),
        )
        started = start()
        row = (
            None
            if started
            else Invocation.objects.filter(id=envelope.id).values_list("status", "holder").first()
        )
        if row is None and not started:
            # The accepting request publishes before it commits: wait for its commit, then retry.
            if not accept_settled(envelope.id):
                guard.refuse(
                    message,
                    f"invocation {envelope.id} is unknown here: never accepted (the accepting "
                    "request failed before its commit), pruned, or a replay",
                )
            started = start()
            if not started:
                row = Invocation.objects.filter(id=envelope.id).values_list("status", "holder").first()
        if started:
            _holding.holder = holder
            _holding.row = (envelope.id, now, *started)
            heartbeat.hold(holder)
            return
        assert row is not None  # rows are deleted only once finished, long after their run
        status, old_holder = row
        if status == Status.RUNNING:
            died = Invocation.objects.filter(heartbeat.stale_holder(now), id=envelope.id, holder=old_holder)
            if died.update(status=Status.DEAD, error=poison.WORKER_DIED, finished_at=now, holder=""):
                notify(envelope.id)
                poison.dead_letter(message, f"invocation {envelope.id}: {poison.WORKER_DIED} on its last run")
                return
            # Its holder is alive (a duplicate delivery), or died so recently that its
            # heartbeat is not stale yet: acking would lose the only copy if it did die.
            recheck_ms = int((heartbeat.stale_after().total_seconds() + heartbeat.interval_s()) * 1000)
            broker.enqueue(message.copy(), delay=recheck_ms)
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
        holder, _holding.holder, _holding.row = _holding.holder, None, None
        try:
            if holder is not None:
                heartbeat.release(holder)
                self._record_outcome(broker, message, envelope.id, holder, state, exception)
        finally:
            notify(envelope.id)

    def _record_outcome(
        self,
        broker: dramatiq.Broker,
        message: Any,
        invocation_id: str,
        holder: str,
        state: Any,
        exception: BaseException | None,
    ) -> None:
        # Fenced: only while this delivery still holds the row.
        write = functools.partial(transitions.record, router.db_for_write(Invocation), invocation_id, holder)
        now = timezone.now()
        if exception is None:
            try:
                written = write(status=Status.SUCCEEDED, result=state.result, error="", finished_at=now)
            except (TypeError, ValueError) as exc:  # the return value is not JSON
                written = write(
                    status=Status.FAILED, error=f"result is not JSON-serialisable: {exc}", finished_at=now
                )
                message.fail()
        else:
            # Kept for days and shown in the API and admin: no secret the run received.
            error = redaction.scrub(_error_text(exception), invocations.mask_message(message)[1])
            if invocations.will_retry(broker, message, exception):
                written = write(status=Status.RETRYING, error=error)
            else:
                exhausted = message.options.get("retries", 0) > 0
                written = write(
                    status=Status.DEAD if exhausted else Status.FAILED, error=error, finished_at=now
                )
        if not written:
            logger.warning(
                "Invocation %s: this run lost its hold (its heartbeat went stale and another "
                "delivery took over); its outcome is not recorded",
                invocation_id,
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

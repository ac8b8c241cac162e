"""The consumer of one queue: claims rows, hands them to Dramatiq, acks in batches.

Threads and what they touch (each uses its own Django connection):

* the consumer thread (``__next__``): claims, flushes queued acks/nacks, requeues expired
  leases of its queue;
* worker threads (``ack``/``nack``): only queue the outcome in memory and wake the consumer,
  so a function's own connection and transaction are never used for bookkeeping and many
  acks share one statement;
* the heartbeat thread: renews the leases of the messages in flight (handed to a worker
  thread and not yet finished), so a message whose outcome was lost returns after its lease;
* the listener thread (``notify=true``): wakes the consumer on NOTIFY (PostgreSQL) or on a ring
  of the socket doorbell (SQLite), see :mod:`.doorbell`.

Guarantees: a row is handed to at most one consumer per lease (claims are atomic: row locks
with SKIP LOCKED, or a conditional UPDATE whose row count proves ownership); an ack deletes the
row only if this broker still holds it (row id + state + owner), so an ack that lost its lease
never deletes a redelivered message. A crash before the ack flush means the message runs again
after its lease: at-least-once.

Outcomes outlive a consumer: Dramatiq restarts a consumer after a database error and its worker
threads post outcomes to whichever consumer is current, the closed one included. The messages
in flight and the queued outcomes are therefore kept per broker and queue (:class:`_Book`), so
the next consumer writes what the closed one could not.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone
from dramatiq import Message
from dramatiq.broker import Consumer, MessageProxy

from ..base import BrokerUnavailable
from . import doorbell
from .models import State

if TYPE_CHECKING:
    from .broker import DatabaseBroker

logger = logging.getLogger("pygigo.adapters.db")


class DatabaseMessage(MessageProxy):
    """A claimed message: remembers its row, so ack/nack touch exactly that row, and how
    many times the row was claimed (this claim included)."""

    def __init__(self, message: Message[Any], row_id: int, deliveries: int) -> None:
        super().__init__(message)
        self.row_id = row_id
        self.deliveries = deliveries


class _Book:
    """What a broker's consumers of one queue share: messages in flight, queued outcomes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: set[int] = set()
        self.done: collections.deque[tuple[int, str | None]] = collections.deque()  # (row, error)


class DatabaseConsumer(Consumer):
    """Iterates over claimed messages of ``queue_name``; ``None`` after ``timeout_ms`` idle.

    Holds at most ``prefetch`` messages (claimed and not yet acked) at a time.
    """

    def __init__(self, broker: DatabaseBroker, queue_name: str, prefetch: int, timeout_ms: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.timeout_s = timeout_ms / 1000
        self.lease_s = broker.lease.total_seconds()
        self._wake = threading.Event()
        book = broker.books.setdefault(queue_name, _Book())
        self._lock, self._in_hand, self._done = book.lock, book.in_flight, book.done
        self._buffer: collections.deque[DatabaseMessage] = collections.deque()
        self._next_reap = 0.0
        self._closed = False
        connection = connections[broker.alias]
        self._skip_locked = bool(connection.features.has_select_for_update_skip_locked)
        self._postgres = connection.vendor == "postgresql"
        broker.doorbell.subscribe(queue_name, self._wake)
        self._listener: doorbell.Listener | doorbell.SocketListener | None = None
        if broker.notify:
            self._listener = doorbell.Listener(broker.alias, queue_name, self._wake)
        elif broker.socket_bell is not None:
            try:
                self._listener = doorbell.SocketListener(broker.socket_bell, queue_name, self._wake)
            except OSError as exc:
                logger.warning("No doorbell for %r (%s); polling it.", queue_name, exc)
        if self._listener is not None:
            self._listener.start()
        self._heartbeat = _Heartbeat(self)
        self._heartbeat.start()

    # -- Dramatiq's consumer interface ----------------------------------------------------

    def __next__(self) -> DatabaseMessage | None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            # Cleared before looking, so a doorbell rung while we look is not lost.
            self._wake.clear()
            with self._guard():
                self._flush_done()
                if self._buffer:
                    return self._buffer.popleft()
                self._reap_expired_leases()
                room = self.prefetch - len(self._in_hand)
                next_due_s = None
                if room > 0:
                    if self._claim(room):
                        return self._buffer.popleft()
                    next_due_s = self._seconds_until_next_due()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = min(remaining, self.broker.poll_interval_s)
            if next_due_s is not None:
                wait = min(wait, next_due_s)
            self._wake.wait(wait)

    def ack(self, message: MessageProxy) -> None:
        self._finish(message, None)

    def nack(self, message: MessageProxy) -> None:
        exc = getattr(message, "_exception", None)
        self._finish(message, f"{type(exc).__name__}: {exc}" if exc else "rejected")

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Give unstarted messages back now (graceful shutdown), instead of after the lease."""
        ids = [m.row_id for m in messages if isinstance(m, DatabaseMessage)]
        with self._lock:
            ids += [m.row_id for m in self._buffer]
            self._buffer.clear()
            self._in_hand.difference_update(ids)
        if ids:
            with self._guard():
                self._mine().filter(pk__in=ids).update(
                    state=State.READY, lease_owner="", lease_expires_at=None, deliveries=F("deliveries") - 1
                )

    def close(self) -> None:
        """Flush outcomes, give back unstarted messages, stop the helper threads. Messages
        still running elsewhere keep their rows; their lease expires if nobody acks them."""
        if self._closed:
            return
        self._closed = True
        self.broker.doorbell.unsubscribe(self.queue_name, self._wake)
        if self._listener is not None:
            self._listener.stop()
        try:
            self.requeue(())
            with self._guard():
                self._flush_done()
        except BrokerUnavailable as exc:
            logger.warning(
                "Closing consumer of %r: %s (its messages return after their lease)", self.queue_name, exc
            )
        finally:
            self._heartbeat.stop()

    # -- internals ------------------------------------------------------------------------

    def _finish(self, message: MessageProxy, error: str | None) -> None:
        # Called from worker threads: record only; the consumer thread writes (batched).
        row_id = message.row_id
        with self._lock:
            self._in_hand.discard(row_id)
            self._done.append((row_id, error))
        self._wake.set()

    def _mine(self) -> Any:
        """Rows of this queue this broker holds right now."""
        return self.broker.rows().filter(
            queue_name=self.queue_name, state=State.CLAIMED, lease_owner=self.broker.owner
        )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate database errors; drop this thread's broken connection so the next try
        (Dramatiq restarts the consumer) reconnects."""
        try:
            with self.broker.translate_errors():
                yield
        except BrokerUnavailable:
            connection = connections[self.broker.alias]
            if not connection.in_atomic_block:
                connection.close()
            raise

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction for bookkeeping writes. On PostgreSQL without a synchronous WAL
        flush: losing a claim or an ack in a database crash only means a redelivery, which
        at-least-once allows; enqueues stay fully durable."""
        with transaction.atomic(using=self.broker.alias):
            if self._postgres:
                with connections[self.broker.alias].cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            yield

    def _flush_done(self) -> None:
        with self._lock:
            done = list(self._done)
            self._done.clear()
        if not done:
            return
        acked = [row_id for row_id, error in done if error is None]
        failed = [(row_id, error) for row_id, error in done if error is not None]
        try:
            with self._write():
                deleted = self._mine().filter(pk__in=acked).delete()[0] if acked else 0
                now = timezone.now()
                for row_id, error in failed:
                    self._mine().filter(pk=row_id).update(
                        state=State.DEAD, dead_at=now, error=error, lease_owner="", lease_expires_at=None
                    )
        except BaseException:
            with self._lock:  # not written: try again on the next look
                self._done.extendleft(reversed(done))
            raise
        if deleted < len(acked):
            logger.warning(
                "%d message(s) of %r finished after their lease expired; they may run again. "
                "Raise lease_s if functions block the heartbeat.",
                len(acked) - deleted,
                self.queue_name,
            )

    def _ready(self, now: datetime) -> Any:
        return (
            self.broker.rows()
            .filter(queue_name=self.queue_name, state=State.READY, available_at__lte=now)
            .order_by("-priority", "available_at", "id")
        )

    def _claim(self, room: int) -> int:
        """Claim up to ``room`` ready rows into the buffer; returns how many."""
        now = timezone.now()
        claim = {
            "state": State.CLAIMED,
            "lease_owner": self.broker.owner,
            "lease_expires_at": now + self.broker.lease,
            "deliveries": F("deliveries") + 1,
        }
        rows = self.broker.rows()
        if self._skip_locked:
            # Row locks: concurrent claimers skip each other's rows instead of waiting.
            with self._write():
                locked = self._ready(now).select_for_update(skip_locked=True)
                picked = [
                    (pk, body, deliveries + 1)  # as the UPDATE below leaves it
                    for pk, body, deliveries in locked.values_list("id", "body", "deliveries")[:room]
                ]
                if picked:
                    rows.filter(pk__in=[pk for pk, _, _ in picked]).update(**claim)
        else:
            # SQLite: no row locks. Read candidates, then claim them with one conditional
            # UPDATE; the state check makes a row claimable once, and the row count proves
            # how many are ours. A single-statement write waits on the busy timeout instead of
            # failing the way a read-then-write transaction can.
            ids = list(self._ready(now).values_list("id", flat=True)[:room])
            if not ids or not rows.filter(pk__in=ids, state=State.READY).update(**claim):
                return 0
            picked = list(self._mine().filter(pk__in=ids).values_list("id", "body", "deliveries"))
        with self._lock:
            for row_id, body, deliveries in picked:
                self._in_hand.add(row_id)
                message = Message.decode(body.encode("utf-8"))
                self._buffer.append(DatabaseMessage(message, row_id, deliveries))
        return len(picked)

    def _seconds_until_next_due(self) -> float | None:
        now = timezone.now()
        due = (
            self.broker.rows()
            .filter(queue_name=self.queue_name, state=State.READY, available_at__gt=now)
            .order_by("available_at")
            .values_list("available_at", flat=True)
            .first()
        )
        return None if due is None else max(0.0, (due - now).total_seconds())

    def _reap_expired_leases(self) -> None:
        """Make messages whose holder stopped renewing (a dead worker) ready again."""
        if time.monotonic() < self._next_reap:
            return
        self._next_reap = time.monotonic() + min(max(self.lease_s / 4, 0.5), 10.0)
        count = (
            self.broker.rows()
            .filter(queue_name=self.queue_name, state=State.CLAIMED, lease_expires_at__lt=timezone.now())
            .update(state=State.READY, lease_owner="", lease_expires_at=None)
        )
        if count:
            logger.warning(
                "%d message(s) of %r outlived their lease; delivering them again.", count, self.queue_name
            )

    def renew_leases(self) -> int:
        """Extend the leases of this queue's messages in flight (not those whose outcome is
        queued: if it is never written, they must return after their lease)."""
        with self._lock:
            in_flight = list(self._in_hand)
        if not in_flight:
            return 0
        return int(
            self._mine().filter(pk__in=in_flight).update(lease_expires_at=timezone.now() + self.broker.lease)
        )


class _Heartbeat(threading.Thread):
    """Renews the leases of messages in flight every lease/3, so a long function keeps its
    message and a dead process (no heartbeat) loses it after one lease."""

    def __init__(self, consumer: DatabaseConsumer) -> None:
        super().__init__(name=f"pygigo-db-heartbeat-{consumer.queue_name}", daemon=True)
        self.consumer = consumer
        self.interval_s = consumer.lease_s / 3
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        alias = self.consumer.broker.alias
        try:
            while not self._halt.wait(self.interval_s):
                try:
                    self.consumer.renew_leases()
                except Exception as exc:
                    logger.warning("Renewing leases of %r failed: %s", self.consumer.queue_name, exc)
                    connections[alias].close()
        finally:
            connections[alias].close()

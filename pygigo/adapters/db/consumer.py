"""The consumer of one queue: claims rows in batches, hands them to Dramatiq, writes outcomes
in batches.

Threads and what they touch (each uses its own Django connection):

* the consumer thread (``__next__``): claims, writes queued acks/nacks, requeues expired
  leases of its queue;
* worker threads (``ack``/``nack``): only queue the outcome in memory and, when it matters,
  wake the consumer, so a function's own connection and transaction are never used for
  bookkeeping and many outcomes share one statement;
* the heartbeat thread: renews the leases of the messages in flight (handed to a worker
  thread and not yet finished), so a message whose outcome was lost returns after its lease;
* the listener thread (``notify=true``): wakes the consumer on NOTIFY (PostgreSQL) or on a ring
  of the socket doorbell (SQLite), see :mod:`.doorbell`.

Batching. The consumer holds at most ``prefetch`` messages (claimed and not finished), and
claims only once at least half of that is free: while a queue drains, one transaction per
half-prefetch of messages writes every outcome queued since the last claim (one ``DELETE`` for
the acks, one ``UPDATE`` per distinct error for the nacks) and claims the next batch with one
``UPDATE … RETURNING`` (:mod:`.statements`; on PostgreSQL the whole transaction is one round
trip). When no claim is due, queued outcomes are written once the oldest has waited
``ACK_DELAY_S`` (a tenth of the lease if shorter), and when the consumer closes: an outcome
waits milliseconds, far less than a lease, so a finished message is not redelivered for want of
its ack while its worker lives. Claimed messages not yet handed to Dramatiq are given back
(``requeue``) when the consumer closes.

Guarantees: a row is handed to at most one consumer per lease (claims are atomic: row locks
with SKIP LOCKED on PostgreSQL; on SQLite the whole statement runs under the database's single
write lock); an ack deletes the row only if this broker still holds it (row id + state +
owner), so an ack that lost its lease never deletes a redelivered message. A crash before the
outcome is written means the message runs again after its lease: at-least-once.

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
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import F
from django.utils import timezone
from dramatiq import Message
from dramatiq.broker import Consumer, MessageProxy

from .. import base
from ..base import BrokerUnavailable
from . import doorbell
from .models import State
from .statements import Bookkeeping

if TYPE_CHECKING:
    from .broker import DatabaseBroker

logger = logging.getLogger("pygigo.adapters.db")

#: Longest a finished message's outcome waits in memory for a claim to share its transaction.
#: Capped at a tenth of the lease (outcomes are not renewed), so it is always written in time.
ACK_DELAY_S = 0.005


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
        # (row, None) for an ack; (row, (error, body)) for a dead letter.
        self.done: collections.deque[tuple[int, tuple[str, str] | None]] = collections.deque()
        #: When the oldest queued outcome was queued (monotonic), None when none is queued.
        self.done_since: float | None = None


class DatabaseConsumer(Consumer):
    """Iterates over claimed messages of ``queue_name``; ``None`` after ``timeout_ms`` idle.

    Holds at most ``prefetch`` messages (claimed and not yet finished) at a time.
    """

    def __init__(self, broker: DatabaseBroker, queue_name: str, prefetch: int, timeout_ms: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        # Claim when half the prefetch is free: batches of about prefetch/2 (Dramatiq's
        # default prefetch is twice the worker threads, so a batch is about one per thread),
        # while the other half keeps the workers busy.
        self._batch = max(1, self.prefetch // 2)
        self.timeout_s = timeout_ms / 1000
        self.lease_s = broker.lease.total_seconds()
        self._ack_delay_s = min(ACK_DELAY_S, self.lease_s / 10)
        self._wake = threading.Event()
        self._book = broker.books.setdefault(queue_name, _Book())
        self._lock, self._in_hand, self._done = self._book.lock, self._book.in_flight, self._book.done
        self._buffer: collections.deque[DatabaseMessage] = collections.deque()
        self._next_reap = 0.0
        self._closed = False
        self._sql = Bookkeeping(broker.alias, broker.model._meta.db_table, queue_name, broker.owner)
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
                wait = self._step()
            if self._buffer:
                return self._buffer.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._wake.wait(min(remaining, wait))

    def ack(self, message: MessageProxy) -> None:
        self._finish(message, None)

    def nack(self, message: MessageProxy) -> None:
        exc = getattr(message, "_exception", None)
        error = f"{type(exc).__name__}: {exc}" if exc else "rejected"
        # A dead letter is kept for days and shown in the admin: without the secrets its run
        # needed (forwarded credentials, sensitive arguments), as the installed redactor knows them.
        redactor = base.redactor()
        kept = redactor.message(message).encode().decode("utf-8")
        self._finish(message, (redactor.text(error, message), kept))

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
        """Write queued outcomes, give back unstarted messages, stop the helper threads.
        Messages still running elsewhere keep their rows; their lease expires if nobody acks
        them."""
        if self._closed:
            return
        self._closed = True
        self.broker.doorbell.unsubscribe(self.queue_name, self._wake)
        if self._listener is not None:
            self._listener.stop()
        try:
            self.requeue(())
            with self._guard():
                self._exchange(0)
        except BrokerUnavailable as exc:
            logger.warning(
                "Closing consumer of %r: %s (its messages return after their lease)", self.queue_name, exc
            )
        finally:
            self._heartbeat.stop()

    # -- internals ------------------------------------------------------------------------

    def _step(self) -> float:
        """Write outcomes and claim, as due; returns how long to sleep if nothing came in."""
        room = self.prefetch - len(self._in_hand)
        if self._buffer or room < self._batch:
            # No claim due: write the outcomes only once the oldest has waited long enough.
            flush_in = self._flush_in()
            if flush_in is not None and flush_in <= 0:
                self._exchange(0)
                flush_in = None
            return self.broker.poll_interval_s if flush_in is None else flush_in
        self._reap_expired_leases()
        if self._exchange(room):
            return 0.0
        due_s = self._seconds_until_next_due()
        return self.broker.poll_interval_s if due_s is None else min(self.broker.poll_interval_s, due_s)

    def _flush_in(self) -> float | None:
        """Seconds until the queued outcomes must be written (None: nothing queued)."""
        since = self._book.done_since
        return None if since is None else since + self._ack_delay_s - time.monotonic()

    def _finish(self, message: MessageProxy, error: tuple[str, str] | None) -> None:
        # Called from worker threads: record only; the consumer thread writes (batched).
        row_id = message.row_id
        with self._lock:
            self._in_hand.discard(row_id)
            self._done.append((row_id, error))
            first = self._book.done_since is None
            if first:
                self._book.done_since = time.monotonic()
            room = self.prefetch - len(self._in_hand)
        # Wake the consumer to start the flush timer or to claim; other outcomes just queue.
        if first or room >= self._batch:
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

    def _exchange(self, room: int) -> int:
        """In one transaction, write the queued outcomes and claim up to ``room`` ready rows
        into the buffer; returns how many were claimed."""
        with self._lock:
            done = list(self._done)
            self._done.clear()
            since, self._book.done_since = self._book.done_since, None
        if not done and room <= 0:
            return 0
        acked = [row_id for row_id, error in done if error is None]
        failed = [(row_id, outcome) for row_id, outcome in done if outcome is not None]
        now = timezone.now()
        statements = []
        if acked:
            statements.append(self._sql.ack(acked))
        for row_id, (error, body) in failed:  # rare: one statement each, with its own body
            statements.append(self._sql.bury(row_id, error, body, now))
        if room > 0:
            statements.append(self._sql.claim(room, now, now + self.broker.lease))
        try:
            results = self._sql.run(statements)
        except BaseException:
            with self._lock:  # not written: try again on the next look
                self._done.extendleft(reversed(done))
                if done:
                    self._book.done_since = since
            raise
        deleted = results[0][0] if acked else 0
        if deleted < len(acked):
            logger.warning(
                "%d message(s) of %r finished after their lease expired; they may run again. "
                "Raise lease_s if functions block the heartbeat.",
                len(acked) - deleted,
                self.queue_name,
            )
        picked = results[-1][1] if room > 0 else []
        # The claim statement returns rows in no particular order: restore the queue's.
        picked.sort(key=lambda row: (-row[3], row[4], row[0]))
        with self._lock:
            for row_id, body, deliveries, _, _ in picked:
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

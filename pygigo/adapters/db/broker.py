"""Database broker: the Django database as a durable Dramatiq broker (``db://``).

Features: durable queues in one table (``pygigo_db_message``), delays stored in the database
(``available_at``: a delayed message survives any worker restart), retries, broker-level
priority (``ORDER BY priority DESC, available_at, id``), dead letters kept in the database and
requeued from the Django admin, acked rows deleted at once, leases renewed while a function
runs (a SIGKILLed worker's messages run again once its lease expires: at-least-once),
queue stats (the oldest ready age counts from when the row became available, i.e. its
``available_at``: a delayed message's age starts when its delay ends). Idle consumers wake on a
doorbell: ``LISTEN/NOTIFY`` on PostgreSQL (typically a few milliseconds), a Unix datagram socket
per consumer on SQLite (its processes share the machine the file is on).

Databases: PostgreSQL, and SQLite 3.35 or later (the broker needs ``UPDATE … RETURNING``);
others are refused with a ConfigurationError.

**Batching** (details in :mod:`pygigo.adapters.db.consumer` and
:mod:`pygigo.adapters.db.statements`). A consumer holds at most its Dramatiq ``prefetch``
(twice the worker threads by default) messages, claimed and not finished, and claims once half
of that is free: one statement claims the batch (``SELECT … FOR UPDATE SKIP LOCKED`` inside
``UPDATE … RETURNING`` on PostgreSQL; on SQLite the statement runs under the database's single
write lock), in the same transaction as one ``DELETE`` of every ack queued since the last
claim; on PostgreSQL that transaction is a single round trip. Acks and nacks wait in the
worker process's memory for at most 5 ms (a tenth of the lease if that is shorter) before being written
on their own, and are written when the consumer closes; unstarted claimed messages are given
back at close. What this relies on: an outcome not yet written when a worker dies is lost like
an ack lost in flight (the message runs again after its lease: at-least-once, as before); an
ack is only written while this broker still holds the row (id, state and owner), so a message
whose lease expired and was claimed elsewhere is never deleted by the late ack; and the claim
index ends with ``id``, so a claim reads only its batch, in queue order.

**Transactional enqueue.** Sending inside ``transaction.atomic()`` on the broker's database
alias makes the message part of the caller's transaction: it becomes visible to workers when
the transaction commits and vanishes if it rolls back, so "save the order, then process it"
cannot half-happen. (The other brokers enqueue when called; use ``transaction.on_commit``
there.) On another alias the enqueue commits on its own.

URL form: ``db://`` (the ``default`` database) or ``db://<alias>`` (another alias of
``settings.DATABASES``), plus ``?option=value&…``. Needs ``"pygigo.adapters.db"`` in
``INSTALLED_APPS`` and ``manage.py migrate pygigo_db [--database <alias>]``.

Options:
  lease_s           seconds a claimed message stays invisible to other workers; renewed every
                    lease_s/3 while it runs; a dead worker's messages return after it
                    (default 60)
  poll_interval_ms  longest an idle consumer sleeps before looking again (default 100)
  notify            ring a doorbell on enqueue that wakes idle consumers in other processes
                    (default true): LISTEN/NOTIFY on PostgreSQL, Unix sockets on SQLite;
                    ignored on other databases

SQLite: use WAL (``PRAGMA journal_mode=WAL``) and, for your own transactions,
``"transaction_mode": "IMMEDIATE"`` in ``OPTIONS`` (Pygigo's default site does both); the app
raises every SQLite connection's busy timeout to 30 s. The broker's own transactions on SQLite
start with a write, so workers wait for the write lock instead of failing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

import django.db
import dramatiq
from django.apps import apps
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from dramatiq import Message
from dramatiq.common import q_name
from dramatiq.errors import QueueJoinTimeout, QueueNotFound
from dramatiq.middleware import Middleware

from ..base import (
    BrokerUnavailable,
    BrokerURL,
    Capabilities,
    CapabilityError,
    ConfigurationError,
    Option,
    PygigoBroker,
    QueueStats,
    parse_bool,
)
from . import doorbell

if TYPE_CHECKING:
    from .consumer import DatabaseConsumer
    from .models import Message as Row

APP = "pygigo.adapters.db"


def _positive_float(value: str) -> float:
    parsed = float(value)
    if not parsed > 0:
        raise ValueError(f"must be positive, got {value}")
    return parsed


def _positive_int(value: str) -> int:
    parsed = int(value)
    if parsed <= 0:
        raise ValueError(f"must be positive, got {value}")
    return parsed


class _Table(dramatiq.Broker):
    """Last in the MRO: where ``PygigoBroker.enqueue`` (size check, error translation) lands."""

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        return self._store(message, delay)

    def _store(self, message: Message[Any], delay: int | None) -> Message[Any]:
        raise NotImplementedError


class DatabaseBroker(PygigoBroker, _Table):
    """A Dramatiq broker on a Django database alias. Thread-safe: every thread uses its own
    Django connection. Build one per process (connections do not survive ``fork``)."""

    scheme = "db"
    # Large bodies bloat every claim and the table: over 1 MiB, use the claim-check store.
    capabilities = Capabilities(max_message_bytes=1024 * 1024, supports_priority=True, text_bodies=True)
    url_options = {
        "lease_s": Option(_positive_float, 60.0, "seconds a claimed message stays invisible (renewed)"),
        # The longest a missed doorbell (or a message no doorbell announces: an expired lease,
        # an admin requeue) waits; an idle look is one indexed SELECT.
        "poll_interval_ms": Option(_positive_int, 100, "longest idle sleep between looks (ms)"),
        "notify": Option(parse_bool, True, "doorbell for other processes' consumers (true/false)"),
    }
    # ProgrammingError: PostgreSQL's "relation does not exist" (not migrated).
    driver_errors = (django.db.OperationalError, django.db.InterfaceError, django.db.ProgrammingError)

    def __init__(
        self,
        *,
        alias: str = "default",
        lease_s: float = 60.0,
        poll_interval_ms: int = 100,
        notify: bool = True,
        middleware: list[Middleware] | None = None,
    ) -> None:
        super().__init__(middleware=middleware)
        self.alias = alias
        self.lease = timedelta(seconds=lease_s)
        self.poll_interval_s = poll_interval_ms / 1000
        from .statements import supported

        if not supported(connections[alias]):
            raise ConfigurationError(
                f"db:// runs on PostgreSQL or SQLite 3.35+ (it needs UPDATE … RETURNING), not on "
                f"database {_describe(alias)}."
            )
        self.notify = notify and doorbell.can_notify(connections[alias])
        self.socket_bell = doorbell.SocketDoorbell.for_connection(connections[alias]) if notify else None
        self.queues: dict[str, None] = {}
        self.doorbell = doorbell.LocalDoorbell()
        # Per queue, shared by the consumers Dramatiq restarts (see consumer._Book).
        self.books: dict[str, Any] = {}
        # Who holds a lease, readable in the admin. Unique per broker instance, so a
        # restarted consumer of the same broker can still ack what the old one claimed.
        self.owner = f"{socket.gethostname()[:64]}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.endpoint = _describe(alias)
        from .models import Message as Row

        self.model: type[Row] = Row

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        if url.path not in ("", "/"):
            raise ConfigurationError(
                f"db:// takes a database alias, not a path: {url.redacted!r}. Use db://<alias>."
            )
        alias = url.netloc or "default"
        if alias not in settings.DATABASES:
            raise ConfigurationError(
                f"No database alias {alias!r} for broker URL {url.redacted!r}. Aliases in "
                f"settings.DATABASES: {', '.join(sorted(settings.DATABASES))}."
            )
        if not apps.ready or not apps.is_installed(APP):
            raise ConfigurationError(
                f"The db:// broker needs the app {APP!r} in INSTALLED_APPS (and Django set up), "
                f"then `manage.py migrate pygigo_db --database {alias}`."
            )
        return cls(alias=alias, middleware=middleware, **url.options)

    # -- Dramatiq's broker interface ------------------------------------------------------

    def rows(self) -> Any:
        """The message table on this broker's alias (a queryset)."""
        return self.model.objects.using(self.alias)

    def declare_queue(self, queue_name: str) -> None:
        # No delay queue: delays live in the row (available_at), not in worker memory.
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues[queue_name] = None
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Store ``message`` (after ``delay`` ms). Inside ``transaction.atomic()`` on this
        alias, it commits or rolls back with the caller's transaction."""
        # Any queue name is fine: the table holds every queue, and the sender need not have
        # declared the queue its workers consume.
        queue_name = q_name(message.queue_name)
        if "eta" in message.options:
            # An eta would make Dramatiq's consumer hold the message in memory; here the
            # database holds it. (Messages from other brokers may carry one.)
            eta_ms = message.options["eta"]
            options = {k: v for k, v in message.options.items() if k != "eta"}
            message = dataclasses.replace(message, options=options)
            if isinstance(eta_ms, int | float):
                delay = max(delay or 0, int(eta_ms - time.time() * 1000))
        message = message.copy(queue_name=queue_name)
        return super().enqueue(message, delay=delay)  # size check and error translation

    def _row(self, message: Message[Any], delay: int | None) -> Any:
        now = timezone.now()
        return self.model(
            queue_name=message.queue_name,
            message_id=message.message_id,
            actor_name=message.actor_name,
            priority=int(message.options.get("broker_priority") or 0),
            enqueued_at=now,
            available_at=now + timedelta(milliseconds=delay) if delay else now,
            body=_text(message),
        )

    def enqueue_many(self, messages: Sequence[Message[Any]]) -> list[Message[Any]]:
        """Store a batch with one multi-row INSERT (and one doorbell ring per queue) in one
        transaction: all or none, and transactional with the caller's like ``enqueue``."""
        batch = [message.copy(queue_name=q_name(message.queue_name)) for message in messages]
        for message in batch:
            self.check_size(message)
            self.emit_before("enqueue", message, None)
        rows = [self._row(message, None) for message in batch]
        queues = {message.queue_name for message in batch}
        connection = connections[self.alias]
        with self.translate_errors(), transaction.atomic(using=self.alias, savepoint=False):
            self.model.objects.using(self.alias).bulk_create(rows, batch_size=500)
            if self.notify:
                for queue_name in queues:
                    doorbell.ring(connection, queue_name)
        for queue_name in queues:
            transaction.on_commit(functools.partial(self._ring_after_commit, queue_name), using=self.alias)
        for message in batch:
            self.emit_after("enqueue", message, None)
        return batch

    def _store(self, message: Message[Any], delay: int | None) -> Message[Any]:
        self.emit_before("enqueue", message, delay)
        row = self._row(message, delay)
        connection = connections[self.alias]
        # savepoint=False: inside the caller's transaction this adds no round trips; outside
        # it, INSERT and NOTIFY commit together.
        with transaction.atomic(using=self.alias, savepoint=False):
            row.save(using=self.alias, force_insert=True)
            if self.notify:
                doorbell.ring(connection, message.queue_name)
        transaction.on_commit(lambda: self._ring_after_commit(message.queue_name), using=self.alias)
        self.emit_after("enqueue", message, delay)
        return message

    def _ring_after_commit(self, queue_name: str) -> None:
        """Consumers in this process, and on SQLite in other processes: at commit (at once
        outside a transaction), so a woken consumer finds the row."""
        self.doorbell.ring(queue_name)
        if self.socket_bell is not None:
            self.socket_bell.ring(queue_name)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> DatabaseConsumer:
        from .consumer import DatabaseConsumer

        if queue_name not in self.queues:
            raise QueueNotFound(queue_name)
        return DatabaseConsumer(self, queue_name, prefetch, timeout)

    def get_declared_queues(self) -> set[str]:
        return set(self.queues)

    def flush(self, queue_name: str) -> None:
        """Delete every message of the queue: ready, delayed, running and dead."""
        with self.translate_errors():
            self.rows().filter(queue_name=q_name(queue_name)).delete()

    def flush_all(self) -> None:
        for queue_name in self.queues:
            self.flush(queue_name)

    def join(self, queue_name: str, *, interval: int = 50, timeout: int | None = None) -> None:
        """Wait until the queue holds no ready, delayed or running message (tests)."""
        deadline = timeout and time.monotonic() + timeout / 1000
        while True:
            with self.translate_errors():
                pending = self.rows().filter(queue_name=q_name(queue_name)).exclude(state="dead").exists()
            if not pending:
                return
            if deadline and time.monotonic() >= deadline:
                raise QueueJoinTimeout(queue_name)
            time.sleep(interval / 1000)

    # -- Pygigo's adapter interface -------------------------------------------------------

    def ping(self) -> None:
        """Connect, and check the broker's table exists (else say which migration to run)."""
        with self.translate_errors():
            connection = connections[self.alias]
            connection.ensure_connection()
            tables = connection.introspection.table_names()
        if self.model._meta.db_table not in tables:
            raise ConfigurationError(
                f"The db:// broker's table {self.model._meta.db_table!r} is missing in database "
                f"{self.endpoint}. {self.migrate_hint()}"
            )

    def migrate_hint(self) -> str:
        database = "" if self.alias == "default" else f" --database {self.alias}"
        return f"Create and migrate it: `pygigo migrate{database}` (or `manage.py migrate{database}`)."

    def unavailable(self, exc: BaseException) -> BrokerUnavailable:
        """A database that is not there yet (SQLite file's folder missing, tables not migrated)
        is not an outage: say what to run instead of "is the server running?"."""
        text = str(exc)
        if any(sign in text for sign in _NOT_READY):
            return BrokerUnavailable(
                f"The db:// broker's database {self.endpoint} is not ready ({text}). {self.migrate_hint()}"
            )
        return super().unavailable(exc)

    def deliveries(self, message: Any) -> int | None:
        return getattr(message, "deliveries", None)  # the row's claim count

    def queue_stats(self, queue_name: str) -> QueueStats:
        from django.db.models import Count, Min, Q

        now = timezone.now()
        with self.translate_errors():
            counts = (
                self.rows()
                .filter(queue_name=q_name(queue_name))
                .aggregate(
                    ready=Count("id", filter=Q(state="ready", available_at__lte=now)),
                    delayed=Count("id", filter=Q(state="ready", available_at__gt=now)),
                    dead=Count("id", filter=Q(state="dead")),
                    oldest=Min("available_at", filter=Q(state="ready", available_at__lte=now)),
                )
            )
        oldest = counts["oldest"]
        return QueueStats(
            ready=counts["ready"],
            delayed=counts["delayed"],
            dead=counts["dead"],
            oldest_ready_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        )


#: Driver messages meaning "this database was never created or migrated" (SQLite, PostgreSQL).
_NOT_READY = ("unable to open database file", "no such table", "does not exist")


def _describe(alias: str) -> str:
    """Where the alias points, for error messages (never a password)."""
    db = settings.DATABASES.get(alias, {})
    engine = str(db.get("ENGINE", "?")).rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"{alias!r} (sqlite3 {db.get('NAME')})"
    host = db.get("HOST") or "localhost"
    port = db.get("PORT") or ""
    return f"{alias!r} ({engine} {host}{':' if port else ''}{port}/{db.get('NAME')})"


def _text(message: Message[Any]) -> str:
    """The message body as the text column stores it."""
    try:
        return message.encode().decode("utf-8")
    except UnicodeDecodeError:
        raise CapabilityError(
            "db:// stores message bodies as text; the configured Dramatiq encoder produced binary. "
            "Use Dramatiq's JSON encoder (Pygigo's default)."
        ) from None

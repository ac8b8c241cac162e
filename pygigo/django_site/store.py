"""Invocations in the Django database: create (with idempotency), send through the outbox,
wait for, cancel, re-run and prune.

Contract of :func:`submit`: when it returns, the invocation is durably recorded; it has been
handed to the broker, or — if the broker was unreachable — it stays in the outbox
(``relayed=False``) and :mod:`pygigo.django_site.outbox` sends it later, by itself. Either way the
caller may answer ``202 Accepted``. Called inside a transaction, the record commits with it and
the message goes out after the commit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import dramatiq
from django.db import IntegrityError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from pygigo.adapters.base import BrokerError, BrokerUnavailable, MessageTooLarge
from pygigo.platform import invocations, metrics, redaction, runtime
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.envelope import Envelope, canonical_json, new_id
from pygigo.platform.functions import Function

from . import completion, sqlite_turn
from .models import STARTABLE, Invocation, Status

logger = logging.getLogger("pygigo.invocations")

DEFAULT_RESULT_TTL_S = 7 * 24 * 3600


def principal_key(principal: dict[str, Any] | None) -> str:
    """``user:<id>`` / ``key:<id>`` / ``anonymous``: who owns an invocation."""
    if principal:
        if principal.get("user_id") is not None:
            return f"user:{principal['user_id']}"
        if principal.get("api_key_id") is not None:
            return f"key:{principal['api_key_id']}"
    return "anonymous"


def anonymous_owner(token: str) -> str:
    """The owner key of an anonymous invocation: a hash of the capability token returned
    with its 202, so only whoever holds the token can read or cancel it."""
    return "anon:" + hashlib.sha256(token.encode()).hexdigest()[:48]


def _send(invocation_id: Any, message: dramatiq.Message[Any], delay_ms: int | None = None) -> bool:
    """Hand one message to the broker and flag the row relayed; False if the broker is down."""
    try:
        runtime.get_broker().enqueue(message, delay=delay_ms)
    except BrokerUnavailable as exc:
        logger.warning("Broker unavailable; invocation %s stays in the outbox: %s", invocation_id, exc)
        _relay_soon()
        return False
    except BrokerError as exc:
        undeliverable(invocation_id, exc)
        return False
    # The sealed copy is only needed to relay; do not keep (possibly secret) bytes around.
    Invocation.objects.filter(id=invocation_id).update(relayed=True, wire="")
    return True


def undeliverable(invocation_id: Any, exc: BrokerError) -> None:
    """The broker refused the message for good (not "down"): fail the invocation, so it
    neither waits in the outbox forever nor blocks the ones queued behind it."""
    logger.error("Invocation %s cannot be delivered: %s", invocation_id, exc)
    Invocation.objects.filter(id=invocation_id).update(
        status=Status.FAILED,
        error=f"undeliverable: {exc}"[:4000],
        finished_at=timezone.now(),
        relayed=True,
        wire="",
    )
    notify(invocation_id)


def submit(
    envelope: Envelope,
    function: Function[..., Any],
    *,
    owner: str | None = None,
    queue: str | None = None,
    options: dict[str, Any] | None = None,
    delay_ms: int | None = None,
) -> tuple[Invocation, bool]:
    """Record ``envelope`` as an invocation and send it (see module contract). ``owner``:
    who may see it (default: the envelope's principal, see :func:`principal_key`).

    ``queue`` and ``options`` override the function's queue and Dramatiq message options for
    this message; ``delay_ms`` defers it. Returns ``(invocation, created)``; ``created`` is
    False when the principal already used the envelope's idempotency key, in which case
    nothing is sent again.
    """
    owner = owner or principal_key(dict(envelope.principal or {}))
    key = envelope.idempotency_key
    if key is not None:
        existing = Invocation.objects.filter(principal=owner, idempotency_key=key).first()
        if existing is not None:
            return existing, False
    function.actor  # noqa: B018 - binds the function and the envelope actor to the broker
    data, payload, message = invocations.sealed_message(envelope, function)
    if queue is not None or options:
        message = message.copy(queue_name=queue or message.queue_name, options=options or {})
    stored, stored_json = _stored_envelope(data, payload, function)
    values = {
        "id": uuid.UUID(envelope.id),
        "function": function.name,
        "queue": message.queue_name,
        "kind": envelope.kind,
        "principal": owner,
        "idempotency_key": key,
        "envelope": stored,
    }
    alias = router.db_for_write(Invocation)
    try:
        if transaction.get_connection(alias).in_atomic_block:
            # A message the broker can never take must be refused now, not parked in the
            # outbox (the fast path's publish checks this before any I/O).
            runtime.get_broker().check_size(message)
            row = _record_then_send(values, stored_json, message, delay_ms, alias)
        else:
            row = _send_before_commit(values, stored_json, message, delay_ms, alias)
    except IntegrityError:
        if key is None:
            raise
        # Lost a race with a concurrent request carrying the same key: theirs wins.
        return Invocation.objects.get(principal=owner, idempotency_key=key), False
    return row, True


def _stored_envelope(
    data: dict[str, Any], payload: bytes, function: Function[..., Any]
) -> tuple[dict[str, Any], str]:
    """What the row keeps of an envelope (for people: the admin, the API), as a dict and as
    JSON: ``data`` (the envelope's dict) with secret header values and ``function``'s
    sensitive fields masked. When there is nothing to mask, as for most requests, that is
    ``data`` itself and the JSON that was signed (``payload``)."""
    if redaction.needs_masking(data, function):
        data = redaction.mask_envelope(data, function)[0]
        payload = canonical_json(data)
    return data, payload.decode("utf-8")


def _prepared_insert(
    values: dict[str, Any], envelope_json: str, connection: BaseDatabaseWrapper
) -> tuple[str, list[Any], Invocation]:
    """The INSERT of the invocation row made of ``values`` by attribute name (the model's
    defaults for the others), ``envelope_json`` being the JSON of ``values["envelope"]``: its
    SQL and parameters, and the row as ``save()`` leaves it. A plain INSERT, not the ORM's
    save, which (serialising the envelope once more) was the largest part of an accept after
    the INSERT itself; prepared before the transaction, which should hold its lock briefly.

    NULL columns are left out; other values are converted as the ORM converts them, except a
    str for a text column, an int for an integer one, a bool for a boolean one: the ORM sends
    those unchanged. No ``pre_save``/``post_save`` signals are sent (nothing in Pygigo
    listens to them for invocations)."""
    row, columns, params = [], [], []
    for field, column, plain in _COLUMNS:
        value = values[field.attname] if field.attname in values else field.get_default()
        row.append(value)
        if value is None and field.null:
            continue
        if field is _ENVELOPE:
            value = envelope_json
        elif type(value) is not plain:
            value = field.get_db_prep_save(value, connection)
        columns.append(column)
        params.append(value)
    key = (connection.vendor, tuple(columns))
    sql = _insert_sql.get(key)
    if sql is None:
        sql = _insert_sql[key] = "INSERT INTO {} ({}) VALUES ({})".format(
            connection.ops.quote_name(Invocation._meta.db_table),
            ", ".join(connection.ops.quote_name(column) for column in columns),
            ", ".join(["%s"] * len(columns)),
        )
    # What a query would have loaded (one value per concrete field, in order): cheaper than
    # the model's keyword constructor.
    return sql, params, Invocation.from_db(connection.alias, _ATTNAMES, row)


#: Field kinds whose values of one type the ORM sends to the database unchanged.
_PLAIN = {"BooleanField": bool, "CharField": str, "TextField": str, "PositiveIntegerField": int}
#: (field, column, the type of the values it takes as they are), in the model's order.
_COLUMNS = tuple(
    (field, field.column, _PLAIN.get(field.get_internal_type()))
    for field in Invocation._meta.concrete_fields
    if field.column
)
_ATTNAMES = tuple(field.attname for field, _, _ in _COLUMNS)
_ENVELOPE = Invocation._meta.get_field("envelope")
#: INSERT statements by database vendor and column list (at most two: with and without an
#: idempotency key).
_insert_sql: dict[tuple[str, tuple[str, ...]], str] = {}


def _send_before_commit(
    values: dict[str, Any],
    envelope_json: str,
    message: dramatiq.Message[Any],
    delay_ms: int | None,
    alias: str,
) -> Invocation:
    """The fast path, outside any transaction: one INSERT and one publish, sharing a commit.

    The row is inserted, the message published, then the row committed (already flagged
    relayed): one write per accepted invocation. A worker that gets the message before the
    commit waits for it (:func:`pygigo.django_site.tracking.accept_settled`); if this process
    dies or the commit fails before the ``202``, the row never exists and the worker refuses
    the message, so nothing runs that was not accepted. Only a broker that is down costs a
    second statement (the row becomes an outbox entry, in the same transaction). On SQLite,
    accepting processes take turns for the write lock (:mod:`.sqlite_turn`).
    """
    connection = connections[alias]
    sql, params, row = _prepared_insert({**values, "relayed": True}, envelope_json, connection)
    with sqlite_turn.writer_turn(connection), transaction.atomic(using=alias):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        try:
            runtime.get_broker().enqueue(message, delay=delay_ms)
        except BrokerUnavailable as exc:
            logger.warning("Broker unavailable; invocation %s stays in the outbox: %s", row.id, exc)
            row.relayed, row.wire = False, message.args[0]
            Invocation.objects.using(alias).filter(id=row.id).update(relayed=False, wire=row.wire)
            transaction.on_commit(_relay_soon, using=alias)
        except MessageTooLarge:
            raise  # refused before any I/O: the row is rolled back, the caller answers 413
        except BrokerError as exc:
            undeliverable(row.id, exc)
            row.refresh_from_db(using=alias)
    return row


def _record_then_send(
    values: dict[str, Any],
    envelope_json: str,
    message: dramatiq.Message[Any],
    delay_ms: int | None,
    alias: str,
) -> Invocation:
    """Inside the caller's transaction: the row commits or rolls back with it, and the message
    goes out only after the commit (``transaction.on_commit``), so a rolled-back transaction
    never runs anything and a worker never waits on the caller's transaction. Until the send,
    the row is an outbox entry (``relayed=False``, sealed envelope in ``wire``)."""
    connection = connections[alias]
    sql, params, row = _prepared_insert({**values, "wire": message.args[0]}, envelope_json, connection)
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute(sql, params)
    transaction.on_commit(lambda: _send(row.id, message, delay_ms), using=alias)
    return row


def _relay_soon() -> None:
    from . import outbox  # imports this module

    outbox.relay_soon()


# -- waiting --------------------------------------------------------------------------------

_waiters: dict[str, list[threading.Event]] = defaultdict(list)
_waiters_lock = threading.Lock()


def _key(invocation_id: Any) -> str:
    # Envelopes carry hex ids, rows UUIDs: one canonical form for the waiter table.
    return invocation_id.hex if isinstance(invocation_id, uuid.UUID) else uuid.UUID(str(invocation_id)).hex


def notify(invocation_id: Any) -> None:
    """Wake the waiters of an invocation whose row changed: in this process at once, in other
    processes by a completion notice (:mod:`.completion`) once the caller's transaction
    commits (so they never read the row before the change is visible)."""
    key = _key(invocation_id)
    with _waiters_lock:
        events = list(_waiters.get(key, ()))
    for event in events:
        event.set()
    transaction.on_commit(functools.partial(completion.announce, key), using=router.db_for_write(Invocation))


def wait_for(invocation_id: Any, timeout_s: float) -> Invocation | None:
    """The invocation once finished, or as it is after ``timeout_s``; None if it does not exist.

    With a completion channel (:mod:`.completion`), subscribes before the first read of the row
    and reads it again on each notice, or every ``PYGIGO_WAIT_FALLBACK_POLL_S`` in case one was
    lost. Without one (or while it is down) polls the database: every 2 ms for the first 100 ms
    (most functions finish in that window, and a primary-key read is cheap), then backing off to
    one read per 100 ms; a worker thread in this process wakes the waiter at once (:func:`notify`).
    """
    key = _key(invocation_id)
    event = threading.Event()
    with _waiters_lock:
        _waiters[key].append(event)
    deadline = time.monotonic() + max(0.0, timeout_s)
    fast_until = time.monotonic() + 0.1
    delay = 0.002
    try:
        with completion.subscription(key) as notice:
            while True:
                invocation = Invocation.objects.filter(id=invocation_id).first()
                remaining = deadline - time.monotonic()
                if invocation is None or invocation.finished or remaining <= 0:
                    return invocation
                if notice is not None and notice.alive:
                    notice.wait(min(completion.fallback_poll_s(), remaining))
                    continue
                event.wait(min(delay, remaining))
                event.clear()
                if time.monotonic() > fast_until:
                    delay = min(delay * 1.5, 0.1)
    finally:
        with _waiters_lock:
            _waiters[key].remove(event)
            if not _waiters[key]:
                del _waiters[key]


# -- fn.invoke ------------------------------------------------------------------------------


def invoke(
    function: Function[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], wait: float | None
) -> Any:
    """Backs ``Function.invoke`` (installed by the app config); see its docstring."""
    envelope = Envelope(function=function.name, kind="call", args=args, kwargs=kwargs)
    invocation, _ = submit(envelope, function)
    if wait is None:
        return str(invocation.id)
    done = wait_for(invocation.id, wait)
    if done is None or not done.finished:
        raise invocations.InvocationTimeout(
            f"invocation {invocation.id} of {function.name!r} did not finish within {wait}s "
            "(it may still run; look it up by id)",
            str(invocation.id),
        )
    if done.status != Status.SUCCEEDED:
        summary = done.error.split("\n", 1)[0]
        raise invocations.InvocationFailed(
            f"invocation {done.id} of {function.name!r} ended {done.status}: {summary}", str(done.id)
        )
    return done.result


# -- cancel, re-run, prune ------------------------------------------------------------------


def cancel(invocation_id: Any) -> bool:
    """Cancel if not started yet (one conditional UPDATE, so it cannot race a worker)."""
    updated = Invocation.objects.filter(id=invocation_id, status__in=STARTABLE).update(
        status=Status.CANCELLED, finished_at=timezone.now(), error="cancelled"
    )
    if updated:
        notify(invocation_id)
        if families := metrics.families():
            labels = Invocation.objects.filter(id=invocation_id).values_list("function", "queue").get()
            families.cancelled.labels(*labels).inc()
    return bool(updated)


def rerun(invocation: Invocation) -> Invocation:
    """A new invocation of the same envelope (fresh id, no idempotency key). Secrets were
    masked when stored, so headers like Cookie come back masked (never forwarded)."""
    from pygigo.platform.registry import registry

    function = registry.get(invocation.function)
    if function is None:
        raise LookupError(f"function {invocation.function!r} is not loaded in this process")
    if function.options.sensitive:
        raise ValueError(
            f"{invocation.function!r} marks fields sensitive, and their values were not kept: "
            "send the request again instead"
        )
    fresh = dataclasses.replace(
        stored_envelope(invocation), id=new_id(), idempotency_key=None, enqueued_at=time.time()
    )
    created, _ = submit(fresh, function)
    return created


def stored_envelope(invocation: Invocation) -> Envelope:
    """The envelope as stored: secrets were masked, so masked headers are dropped (a re-run
    or a resend never forwards them)."""
    stored = dict(invocation.envelope)
    stored["headers"] = [pair for pair in stored.get("headers", []) if pair[1] != redaction.MASK]
    return Envelope.from_dict(stored)


def result_ttl_s() -> float:
    return float(pygigo_settings.setting("PYGIGO_RESULT_TTL_S", DEFAULT_RESULT_TTL_S))


def prune(*, now: Any = None, ttl_s: float | None = None) -> int:
    """Delete finished invocations older than the result TTL (``PYGIGO_RESULT_TTL_S``,
    default 7 days); returns how many. Unfinished ones are never pruned."""
    cutoff = (now or timezone.now()) - timedelta(seconds=result_ttl_s() if ttl_s is None else ttl_s)
    deleted, _ = Invocation.objects.filter(
        status__in=[Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.CANCELLED], finished_at__lt=cutoff
    ).delete()
    return deleted

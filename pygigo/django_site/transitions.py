"""The two UPDATEs every tracked run makes (its start and its outcome), as hand-written SQL.

Through the ORM, building and compiling these conditional UPDATEs cost a worker more than the
round trips themselves (about 0.8 ms of CPU per tracked message; an untracked one costs 0.1 ms
in all). The statements are plain, portable SQL with the model's own column names;
values are adapted by the model's fields exactly as ``QuerySet.update`` adapts them, and they
run through Django's cursor, so transactions, query logging and execute wrappers see them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from time import monotonic, sleep
from typing import Any

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import STARTABLE, Invocation, Status

#: What a run may want to know of its row beyond what its start wrote.
RETURNED = ("attempts", "created_at", "error")
_FIELDS = {field.name: field for field in Invocation._meta.concrete_fields}


_quoted: dict[str, dict[str, str]] = {}


def _columns(connection: Any) -> dict[str, str]:
    """Quoted column names by field name, worked out once per database vendor."""
    columns = _quoted.get(connection.vendor)
    if columns is None:
        quote = connection.ops.quote_name
        columns = _quoted[connection.vendor] = {name: quote(field.column) for name, field in _FIELDS.items()}
        columns["table"] = quote(Invocation._meta.db_table)
    return columns


def _prep(connection: Any, values: dict[str, Any]) -> list[Any]:
    return [_FIELDS[name].get_db_prep_save(value, connection) for name, value in values.items()]


def _aware(value: Any) -> Any:
    """A datetime read back by raw SQL as the ORM would give it (SQLite returns text)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if settings.USE_TZ and isinstance(value, datetime) and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


#: How often a worker looks again at an SQLite write lock another process holds.
LOCK_POLL_S = 0.0002


def _execute(connection: Any, cursor: Any, sql: str, params: list[Any]) -> None:
    """``cursor.execute``; on SQLite, waits for a write lock held elsewhere in steps of
    ``LOCK_POLL_S`` rather than in SQLite's own (1, 2, 5, 10, 15, 20, 25 … ms). The lock a
    worker's start most often meets is the accepting request's, held only while it publishes
    (a RabbitMQ confirm: a millisecond or two), and SQLite's steps turned that into 3-30 ms
    of the ``Prefer: wait`` round trip. Gives up after the database's own busy timeout."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        cursor.execute(sql, params)
        return
    timeout_s = float(connection.settings_dict.get("OPTIONS", {}).get("timeout", 5.0))
    deadline = monotonic() + timeout_s
    # On the driver's connection, not ``cursor``: it keeps the statement's rows for its caller.
    raw = connection.connection
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                cursor.execute(sql, params)
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or monotonic() >= deadline:
                    raise
            sleep(LOCK_POLL_S)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")


def start(
    alias: str,
    invocation_id: str,
    *,
    now: datetime,
    holder: str,
    stale_before: datetime,
    max_retries: int | None,
) -> tuple[int, datetime, str] | None:
    """Take the invocation for a run: queued or retrying, or running under a holder whose
    heartbeat is older than ``stale_before`` (and, with ``max_retries``, with runs left). Marks
    it running under ``holder`` with one more attempt and returns its ``RETURNED`` columns, or
    None when it could not be taken. One round trip where the database has
    ``UPDATE … RETURNING`` (PostgreSQL, SQLite ≥ 3.35); elsewhere a second one reads them."""
    connection = connections[alias]
    c = _columns(connection)
    set_values = {"status": Status.RUNNING, "started_at": now, "heartbeat_at": now, "holder": holder}
    sql = (
        f"UPDATE {c['table']} SET "
        f"{', '.join(f'{c[name]} = %s' for name in set_values)}, {c['attempts']} = {c['attempts']} + 1 "
        f"WHERE {c['id']} = %s AND ({c['status']} IN (%s, %s) OR ({c['status']} = %s AND "
        f"({c['heartbeat_at']} < %s OR {c['heartbeat_at']} IS NULL)"
        + (f" AND {c['attempts']} <= %s" if max_retries is not None else "")
        + "))"
    )
    params = _prep(connection, set_values)
    params += _prep(connection, {"id": invocation_id})
    params += [*STARTABLE, Status.RUNNING, *_prep(connection, {"heartbeat_at": stale_before})]
    if max_retries is not None:
        params.append(max_retries)
    returning = connection.features.can_return_columns_from_insert
    if returning:
        sql += f" RETURNING {', '.join(c[name] for name in RETURNED)}"
    with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
        _execute(connection, cursor, sql, params)
        if returning:
            found = cursor.fetchone()
        elif cursor.rowcount:
            found = Invocation.objects.using(alias).filter(id=invocation_id).values_list(*RETURNED).first()
        else:
            found = None
    if found is None:
        return None
    attempts, created_at, error = found
    return attempts, _aware(created_at), error


def record(alias: str, invocation_id: str, holder: str, **values: Any) -> bool:
    """Write a run's outcome (``values``) while ``holder`` still holds the running row
    (fencing: a holder that was taken over writes nothing). True if written."""
    connection = connections[alias]
    c = _columns(connection)
    sql = (
        f"UPDATE {c['table']} SET "
        f"{', '.join(f'{c[name]} = %s' for name in values)} "
        f"WHERE {c['id']} = %s AND {c['status']} = %s AND {c['holder']} = %s"
    )
    params = [*_prep(connection, values), *_prep(connection, {"id": invocation_id}), Status.RUNNING, holder]
    with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
        _execute(connection, cursor, sql, params)
        return bool(cursor.rowcount)

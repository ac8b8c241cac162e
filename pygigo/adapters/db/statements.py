"""The consumer's bookkeeping SQL: claim a batch, ack a batch, dead-letter a row, and run
several of them as one transaction — on PostgreSQL in one round trip.

Why one round trip matters: a worker's consumer thread shares the GIL with its worker threads.
Each time it waits on the database it releases the GIL, and getting it back from busy worker
threads can take up to the interpreter's switch interval (5 ms). So the cost of bookkeeping is
counted in round trips more than in statements.

* Claim: ``WITH picked AS MATERIALIZED (SELECT id … ORDER BY priority DESC, available_at, id
  LIMIT n [FOR UPDATE SKIP LOCKED]) UPDATE … WHERE state = 'ready' AND id IN (SELECT id FROM
  picked) RETURNING …``. The materialized CTE picks (and on PostgreSQL locks, skipping rows
  other claimers hold) the candidates once, whatever the plan; on SQLite the whole statement
  runs under the database's single write lock. The state check makes a row claimable once.
* Ack and dead-letter: guarded by row id, state and owner, so an outcome that lost its lease
  never touches a redelivered message.
* Run: on PostgreSQL the statements are bound client-side (the driver's own quoting) and sent
  as one multi-statement query, which PostgreSQL runs as one implicit transaction, prefixed by
  ``SET LOCAL synchronous_commit TO OFF`` (losing a claim or an ack in a database crash only
  means a redelivery, which at-least-once allows; enqueues stay fully durable). Elsewhere, one
  transaction with a statement per call.

Needs ``UPDATE … RETURNING``: PostgreSQL, or SQLite 3.35 or later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .models import State

#: SQL text and its parameters.
Statement = tuple[str, list[Any]]
#: Per statement: the row count and the rows it returned.
Result = tuple[int, list[tuple[Any, ...]]]


def supported(connection: BaseDatabaseWrapper) -> bool:
    """Whether the database can run these statements (it has ``UPDATE … RETURNING``)."""
    # SQLite got UPDATE … RETURNING with INSERT … RETURNING (3.35), which Django detects.
    return connection.vendor in ("postgresql", "sqlite") and bool(
        connection.features.can_return_columns_from_insert
    )


class Bookkeeping:
    """The statements of one consumer (queue and lease owner) on one database alias."""

    def __init__(self, alias: str, db_table: str, queue_name: str, owner: str) -> None:
        connection = connections[alias]
        self.alias = alias
        self.queue_name = queue_name
        self.owner = owner
        self._postgres = connection.vendor == "postgresql"
        self._table = connection.ops.quote_name(db_table)
        self._adapt = connection.ops.adapt_datetimefield_value
        self._skip_locked = (
            " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        )

    def _held(self, ids: list[int]) -> tuple[str, list[Any]]:
        """WHERE clause (and parameters) for these rows while this owner holds them."""
        marks = ", ".join(["%s"] * len(ids))
        return (
            f"queue_name = %s AND state = %s AND lease_owner = %s AND id IN ({marks})",
            [self.queue_name, State.CLAIMED.value, self.owner, *ids],
        )

    def ack(self, ids: list[int]) -> Statement:
        """Delete the rows; the row count says how many were still ours."""
        where, params = self._held(ids)
        return f"DELETE FROM {self._table} WHERE {where}", params

    def bury(self, row_id: int, error: str, body: str, now: datetime) -> Statement:
        """Dead-letter the row with ``error``, keeping ``body`` (the message as it may be kept)."""
        where, params = self._held([row_id])
        return (
            f"UPDATE {self._table} SET state = %s, dead_at = %s, error = %s, body = %s, lease_owner = '',"
            f" lease_expires_at = NULL WHERE {where}",
            [State.DEAD.value, self._adapt(now), error, body, *params],
        )

    def claim(self, limit: int, now: datetime, lease_expires_at: datetime) -> Statement:
        """Claim up to ``limit`` ready rows; returns (id, body, deliveries, priority,
        available_at) of each, in no particular order."""
        return (
            f"WITH picked AS MATERIALIZED (SELECT id FROM {self._table}"
            " WHERE queue_name = %s AND state = %s AND available_at <= %s"
            f" ORDER BY priority DESC, available_at, id LIMIT %s{self._skip_locked})"
            f" UPDATE {self._table} SET state = %s, lease_owner = %s, lease_expires_at = %s,"
            " deliveries = deliveries + 1"
            " WHERE state = %s AND id IN (SELECT id FROM picked)"
            " RETURNING id, body, deliveries, priority, available_at",
            [
                self.queue_name,
                State.READY.value,
                self._adapt(now),
                limit,
                State.CLAIMED.value,
                self.owner,
                self._adapt(lease_expires_at),
                State.READY.value,
            ],
        )

    def run(self, statements: list[Statement]) -> list[Result]:
        """Run the statements as one transaction, on this thread's connection."""
        if not statements:
            return []
        connection: Any = connections[self.alias]
        results: list[Result] = []
        # Inside a caller's transaction the statements simply join it (and its durability).
        if self._postgres and not connection.in_atomic_block:
            script = "; ".join(
                ["SET LOCAL synchronous_commit TO OFF"]
                + [connection.ops.compose_sql(sql, params) for sql, params in statements]
            )
            with connection.cursor() as cursor:
                cursor.execute(script)  # no parameters: one simple query, one implicit transaction
                for _ in statements:
                    cursor.nextset()
                    results.append((cursor.rowcount, cursor.fetchall() if cursor.description else []))
            return results
        with transaction.atomic(using=self.alias), connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
                rows = cursor.fetchall() if cursor.description else []
                results.append((len(rows) if rows else cursor.rowcount, rows))
        return results

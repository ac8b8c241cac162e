"""Where the scheduler keeps its shared state: stored schedules, the leader lease, run records.

The platform only knows the :class:`ScheduleStore` protocol; the Django site provides the
database implementation (``pygigo.django_site.scheduling.store.DjangoScheduleStore``, loaded by
dotted path from ``PYGIGO_SCHEDULE_STORE``), so ``platform`` never imports ``django_site``.
:class:`MemoryScheduleStore` serves one process (tests, a single scheduler without a database).

Exactly once per slot rests on two rules every store must keep:

* **Lease**: ``acquire_lease(holder, ttl_s)`` succeeds only if nobody else holds an unexpired
  lease; it is one atomic conditional write, used both to acquire and to renew.
* **Run record**: ``claim_run(schedule, slot, holder)`` inserts a record unique per
  (schedule, slot) and returns True only to the one caller whose insert won. The scheduler
  enqueues only after winning, so even two processes that both believe they lead (a paused
  leader whose lease expired) cannot both enqueue a slot.

A run moves ``claimed → enqueued``, or ``claimed → failed → claimed …`` (retried by
``claim_retries``) ``→ abandoned`` after too many attempts. A run stuck in ``claimed`` (its
process died between claiming and enqueueing) is retried after ``stale_after_s``; its enqueue
may have happened, so that case is at-least-once; everything else is exactly once.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .schedules import ScheduleSpec

CLAIMED, ENQUEUED, FAILED, ABANDONED = "claimed", "enqueued", "failed", "abandoned"


class ScheduleStore(Protocol):
    """Shared scheduler state. Every method is thread-safe and safe across processes (for
    the database store) and takes/returns aware UTC datetimes."""

    def changes_token(self) -> Hashable:
        """A cheap value that changes whenever a stored schedule is added, edited or deleted."""
        ...

    def load_schedules(self) -> list[ScheduleSpec]:
        """The stored schedules (enabled or not). A row that no longer parses is logged and
        left out, never fatal."""
        ...

    def acquire_lease(self, holder: str, ttl_s: float) -> bool:
        """Acquire or renew the leader lease for ``ttl_s`` seconds; True if ``holder`` now
        holds it. One atomic conditional write."""
        ...

    def release_lease(self, holder: str) -> None:
        """Give the lease up now (clean shutdown) if ``holder`` holds it."""
        ...

    def lease_holder(self) -> str | None:
        """Who holds an unexpired lease, if anyone."""
        ...

    def last_fired(self, schedule: str) -> datetime | None:
        """The latest slot with a run record for ``schedule`` (any status)."""
        ...

    def claim_run(self, schedule: str, slot: datetime, holder: str) -> bool:
        """Insert the run record of (schedule, slot); True only for the caller that inserted it."""
        ...

    def finish_run(
        self, schedule: str, slot: datetime, *, message_id: str | None, error: str | None, max_attempts: int
    ) -> None:
        """Record the enqueue outcome: ``enqueued`` (error None) or ``failed``, or ``abandoned``
        once ``max_attempts`` attempts have failed."""
        ...

    def claim_retries(
        self, holder: str, *, retry_delay_s: float, stale_after_s: float, limit: int = 50
    ) -> list[tuple[str, datetime]]:
        """Re-claim (atomically, like ``claim_run``) runs to enqueue again: ``failed`` ones
        whose last attempt is older than ``retry_delay_s`` and ``claimed`` ones older than
        ``stale_after_s``. Returns (schedule, slot) pairs this caller won."""
        ...


@dataclasses.dataclass
class RunRecord:
    schedule: str
    slot: datetime
    holder: str
    status: str = CLAIMED
    attempts: int = 1
    claimed_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    message_id: str | None = None
    error: str = ""


class MemoryScheduleStore:
    """One process's store: schedules set by the test (or caller), lease and runs in dicts.
    ``clock`` is injectable so leases and retries can be tested without waiting."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._schedules: dict[str, ScheduleSpec] = {}
        self._version = 0
        self._lease: tuple[str, datetime] | None = None
        self.runs: dict[tuple[str, datetime], RunRecord] = {}

    # -- stored schedules (the "admin" of a memory store) --
    def put_schedule(self, spec: ScheduleSpec) -> None:
        with self._lock:
            self._schedules[spec.name] = dataclasses.replace(spec, source="db")
            self._version += 1

    def changes_token(self) -> Hashable:
        return self._version

    def load_schedules(self) -> list[ScheduleSpec]:
        with self._lock:
            return list(self._schedules.values())

    # -- lease --
    def acquire_lease(self, holder: str, ttl_s: float) -> bool:
        with self._lock:
            now = self.clock()
            if self._lease is None or self._lease[0] == holder or self._lease[1] <= now:
                self._lease = (holder, now + timedelta(seconds=ttl_s))
                return True
            return False

    def release_lease(self, holder: str) -> None:
        with self._lock:
            if self._lease is not None and self._lease[0] == holder:
                self._lease = None

    def lease_holder(self) -> str | None:
        with self._lock:
            if self._lease is None or self._lease[1] <= self.clock():
                return None
            return self._lease[0]

    # -- runs --
    def last_fired(self, schedule: str) -> datetime | None:
        with self._lock:
            slots = [slot for (name, slot) in self.runs if name == schedule]
        return max(slots) if slots else None

    def claim_run(self, schedule: str, slot: datetime, holder: str) -> bool:
        key = (schedule, slot.astimezone(UTC))
        with self._lock:
            if key in self.runs:
                return False
            self.runs[key] = RunRecord(schedule, key[1], holder, claimed_at=self.clock())
            return True

    def finish_run(
        self, schedule: str, slot: datetime, *, message_id: str | None, error: str | None, max_attempts: int
    ) -> None:
        with self._lock:
            run = self.runs[(schedule, slot.astimezone(UTC))]
            run.finished_at = self.clock()
            run.message_id = message_id
            run.error = error or ""
            if error is None:
                run.status = ENQUEUED
            else:
                run.status = ABANDONED if run.attempts >= max_attempts else FAILED

    def claim_retries(
        self, holder: str, *, retry_delay_s: float, stale_after_s: float, limit: int = 50
    ) -> list[tuple[str, datetime]]:
        won: list[tuple[str, datetime]] = []
        with self._lock:
            now = self.clock()
            for run in sorted(self.runs.values(), key=lambda r: r.slot):
                last_try = run.finished_at or run.claimed_at
                due = (run.status == FAILED and last_try <= now - timedelta(seconds=retry_delay_s)) or (
                    run.status == CLAIMED and run.claimed_at <= now - timedelta(seconds=stale_after_s)
                )
                if due and len(won) < limit:
                    run.status, run.holder, run.claimed_at = CLAIMED, holder, now
                    run.attempts += 1
                    won.append((run.schedule, run.slot))
        return won

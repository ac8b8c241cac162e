"""The database ScheduleStore (see :mod:`pygigo.platform.schedule_store` for the contract).

Lease times are the *database's* clock (``Now()``), so scheduler hosts with skewed clocks still
agree on who leads; the lease is taken and renewed by one conditional UPDATE (``WHERE holder =
me OR expires_at <= now``), which is atomic on PostgreSQL and SQLite alike. Run records rely on
the unique (schedule, slot) constraint: the insert that wins is the only one that enqueues.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, connections, transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Now
from django.utils import timezone

from pygigo.platform.schedule_store import ABANDONED, CLAIMED, ENQUEUED, FAILED
from pygigo.platform.schedules import ScheduleConfigError, ScheduleSpec

from .models import Schedule, SchedulerLease, ScheduleRun

logger = logging.getLogger("pygigo.scheduler.store")

LEASE_NAME = "scheduler"
_NEVER = datetime(2000, 1, 1, tzinfo=UTC)


class DjangoScheduleStore:
    """Schedules, lease and runs in the Django database ``using`` (default: ``default``)."""

    def __init__(self, using: str = "default", lease_name: str = LEASE_NAME) -> None:
        self.using = using
        self.lease_name = lease_name
        self._lease_row_ready = False

    def _check_connection(self) -> None:
        # A scheduler runs for months outside any request cycle, so nothing else would drop a
        # connection broken by a database restart: check this thread's one before each use.
        connections[self.using].close_if_unusable_or_obsolete()

    def changes_token(self) -> Hashable:
        self._check_connection()
        # Count catches deletions, max(updated_at) catches edits and additions: one cheap query.
        row = Schedule.objects.using(self.using).aggregate(n=Count("id"), latest=Max("updated_at"))
        return (row["n"], row["latest"])

    def load_schedules(self) -> list[ScheduleSpec]:
        specs = []
        for row in Schedule.objects.using(self.using).all():
            try:
                specs.append(row.to_spec())
            except (ScheduleConfigError, ValueError) as exc:
                # Rows are validated in the admin, but a row written another way must not stop
                # every other schedule.
                logger.error("schedule %s is invalid and is ignored: %s", row.name, exc)
        return specs

    # -- lease --

    def _ensure_lease_row(self) -> None:
        if not self._lease_row_ready:
            SchedulerLease.objects.using(self.using).get_or_create(
                name=self.lease_name, defaults={"holder": "", "expires_at": _NEVER, "renewed_at": _NEVER}
            )
            self._lease_row_ready = True

    def acquire_lease(self, holder: str, ttl_s: float) -> bool:
        self._check_connection()
        self._ensure_lease_row()
        expires = ExpressionWrapper(Now() + timedelta(seconds=ttl_s), output_field=DateTimeField())
        updated = (
            SchedulerLease.objects.using(self.using)
            .filter(name=self.lease_name)
            .filter(Q(holder=holder) | Q(expires_at__lte=Now()))
            .update(holder=holder, expires_at=expires, renewed_at=Now())
        )
        return updated == 1

    def release_lease(self, holder: str) -> None:
        SchedulerLease.objects.using(self.using).filter(name=self.lease_name, holder=holder).update(
            holder="", expires_at=_NEVER
        )

    def lease_holder(self) -> str | None:
        row = (
            SchedulerLease.objects.using(self.using)
            .filter(name=self.lease_name, expires_at__gt=Now())
            .values_list("holder", flat=True)
            .first()
        )
        return row or None

    # -- runs --

    def last_fired(self, schedule: str) -> datetime | None:
        self._check_connection()
        latest: datetime | None = (
            ScheduleRun.objects.using(self.using).filter(schedule=schedule).aggregate(m=Max("slot"))["m"]
        )
        return latest

    def claim_run(self, schedule: str, slot: datetime, holder: str) -> bool:
        try:
            with transaction.atomic(using=self.using):
                ScheduleRun.objects.using(self.using).create(
                    schedule=schedule, slot=slot, holder=holder, claimed_at=timezone.now()
                )
        except IntegrityError:
            return False  # another replica (or an earlier pass) claimed this slot
        # For the admin's "last fired" column; update() so updated_at (the reload signal) stays.
        Schedule.objects.using(self.using).filter(name=schedule).filter(
            Q(last_fired_slot__isnull=True) | Q(last_fired_slot__lt=slot)
        ).update(last_fired_slot=slot)
        return True

    def finish_run(
        self, schedule: str, slot: datetime, *, message_id: str | None, error: str | None, max_attempts: int
    ) -> None:
        runs = ScheduleRun.objects.using(self.using).filter(schedule=schedule, slot=slot)
        now = timezone.now()
        if error is None:
            runs.update(status=ENQUEUED, finished_at=now, message_id=message_id or "", error="")
        else:
            runs.update(
                status=Case(When(attempts__gte=max_attempts, then=Value(ABANDONED)), default=Value(FAILED)),
                finished_at=now,
                error=error[:2000],
            )
            if runs.filter(status=ABANDONED).exists():
                logger.error(
                    "schedule %s: slot %s abandoned after %d attempts: %s",
                    schedule,
                    slot,
                    max_attempts,
                    error,
                )

    def claim_retries(
        self, holder: str, *, retry_delay_s: float, stale_after_s: float, limit: int = 50
    ) -> list[tuple[str, datetime]]:
        self._check_connection()
        now = timezone.now()
        runs = ScheduleRun.objects.using(self.using)
        candidates = (
            runs.filter(
                Q(status=FAILED, finished_at__lte=now - timedelta(seconds=retry_delay_s))
                | Q(status=CLAIMED, claimed_at__lte=now - timedelta(seconds=stale_after_s))
            )
            .order_by("slot")
            .values_list("id", "schedule", "slot", "status", "attempts")[:limit]
        )
        won = []
        for run_id, schedule, slot, status, attempts in candidates:
            # Conditional on the state we read: two replicas cannot both re-claim one run.
            updated = runs.filter(id=run_id, status=status, attempts=attempts).update(
                status=CLAIMED, attempts=F("attempts") + 1, holder=holder, claimed_at=now
            )
            if updated:
                won.append((schedule, slot))
        return won


def prune_runs(older_than_s: float = 7 * 24 * 3600, using: str = "default") -> int:
    """Delete finished run records (enqueued or abandoned) whose slot is older than
    ``older_than_s``, always keeping each schedule's latest one: it is the "last fired slot"
    the misfire policy counts from. Returns the number deleted. A maintenance hook."""
    runs = ScheduleRun.objects.using(using)
    latest = runs.filter(schedule=OuterRef("schedule")).order_by("-slot").values("slot")[:1]
    old = runs.filter(
        status__in=[ENQUEUED, ABANDONED], slot__lt=timezone.now() - timedelta(seconds=older_than_s)
    ).exclude(slot=Subquery(latest))
    deleted, _ = old.delete()
    return deleted

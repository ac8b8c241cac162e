"""Schedules stored in the database, the leader lease, and one run record per (schedule, slot).

``ScheduleRun`` is keyed by schedule *name* rather than a foreign key: code schedules
(``@pygigo.cron``) and maintenance jobs have no ``Schedule`` row, and run records must outlive
a deleted row (they are what proves a slot already fired).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from pygigo.adapters.base import PygigoError
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.cron import Misfire
from pygigo.platform.registry import registry
from pygigo.platform.schedule_store import ABANDONED, CLAIMED, ENQUEUED, FAILED
from pygigo.platform.schedules import DEFAULT_CATCH_UP_CAP, ScheduleConfigError, ScheduleSpec, parse_timing

MISFIRE_CHOICES = [
    (Misfire.SKIP.value, "skip missed slots"),
    (Misfire.ONCE.value, "run once after downtime"),
    (Misfire.CATCH_UP.value, "catch up every missed slot (up to the cap)"),
]


class Schedule(models.Model):
    """A schedule edited in the admin. A row named like a code schedule overrides it.
    Changes reach running schedulers within their poll interval (``updated_at`` moves)."""

    name: models.CharField[str, str] = models.CharField(max_length=200, unique=True)
    function: models.CharField[str, str] = models.CharField(
        max_length=200, help_text="Name of a registered @pygigo.function."
    )
    expression: models.CharField[str, str] = models.CharField(
        "schedule",
        max_length=100,
        help_text="Crontab (e.g. '*/15 * * * *', '@daily') or '@every 30s' / '@every 5m'.",
    )
    timezone: models.CharField[str, str] = models.CharField(
        max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Paris."
    )
    args: models.JSONField[Any, Any] = models.JSONField(
        default=list, blank=True, help_text="JSON list of positional arguments."
    )
    kwargs: models.JSONField[Any, Any] = models.JSONField(
        default=dict, blank=True, help_text="JSON object of keyword arguments."
    )
    enabled: models.BooleanField[bool, bool] = models.BooleanField(default=True)
    misfire: models.CharField[str, str] = models.CharField(
        max_length=16, choices=MISFIRE_CHOICES, default=Misfire.SKIP.value
    )
    catch_up_cap: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(
        default=DEFAULT_CATCH_UP_CAP, validators=[MinValueValidator(1)]
    )
    # Written with QuerySet.update() by the scheduler, so it does not move updated_at.
    last_fired_slot: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True, editable=False
    )
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"

    def clean(self) -> None:
        """Field-level errors: the expression (naming the bad cron field), the timezone, the
        function (must be registered) and the JSON shapes."""
        errors: dict[str, str] = {}
        try:
            parse_timing(self.expression, self.timezone)
        except ScheduleConfigError as exc:
            key = "timezone" if str(exc).startswith("unknown timezone") else "expression"
            errors[key] = str(exc)
        if not isinstance(self.args, list):
            errors["args"] = "Must be a JSON list, e.g. [1, 2]."
        if not isinstance(self.kwargs, dict):
            errors["kwargs"] = 'Must be a JSON object, e.g. {"day": "monday"}.'
        problem = function_problem(self.function)
        if problem:
            errors["function"] = problem
        if errors:
            raise ValidationError(errors)

    def to_spec(self) -> ScheduleSpec:
        """The platform's view of this row; raises ScheduleConfigError if it no longer parses."""
        return ScheduleSpec(
            name=self.name,
            function=self.function,
            timing=parse_timing(self.expression, self.timezone),
            args=tuple(self.args or ()),
            kwargs=dict(self.kwargs or {}),
            misfire=Misfire(self.misfire),
            catch_up_cap=self.catch_up_cap,
            enabled=self.enabled,
            source="db",
        )


def function_problem(name: str) -> str | None:
    """Why ``name`` cannot be scheduled from this process, or None. Imports PYGIGO_FUNCTIONS
    first, since a web process has no command line naming the functions modules."""
    from pygigo.platform.worker import import_modules

    if registry.get(name) is not None:
        return None
    try:
        import_modules(pygigo_settings.functions_modules())
    except PygigoError as exc:
        return f"Cannot load PYGIGO_FUNCTIONS to check it: {exc}"
    if registry.get(name) is not None:
        return None
    known = sorted(function.name for function in registry)
    if not known:
        return (
            f"Unknown function {name!r}: no functions are loaded in this process. List your "
            f"functions modules in the PYGIGO_FUNCTIONS setting."
        )
    return f"Unknown function {name!r}. Known functions: {', '.join(known)}."


class ScheduleRun(models.Model):
    """One slot of one schedule. The unique constraint is the exactly-once guarantee: the
    scheduler inserts this row first and enqueues only if its insert won."""

    STATUS_CHOICES = [(s, s) for s in (CLAIMED, ENQUEUED, FAILED, ABANDONED)]

    schedule: models.CharField[str, str] = models.CharField(max_length=200)
    slot: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    status: models.CharField[str, str] = models.CharField(
        max_length=16, choices=STATUS_CHOICES, default=CLAIMED
    )
    attempts: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(default=1)
    holder: models.CharField[str, str] = models.CharField(
        max_length=200, help_text="Scheduler process that claimed it last."
    )
    claimed_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    finished_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    message_id: models.CharField[str, str] = models.CharField(max_length=64, blank=True)
    error: models.TextField[str, str] = models.TextField(blank=True)

    class Meta:
        ordering = ["-slot"]
        constraints = [models.UniqueConstraint(fields=["schedule", "slot"], name="pygigo_schedule_run_once")]
        indexes = [models.Index(fields=["status", "claimed_at"], name="pygigo_schedule_run_retry")]

    def __str__(self) -> str:
        return f"{self.schedule} @ {self.slot.isoformat()} ({self.status})"

    @property
    def lateness_s(self) -> float | None:
        """Seconds between the slot and the end of its (last) enqueue."""
        return None if self.finished_at is None else (self.finished_at - self.slot).total_seconds()


class SchedulerLease(models.Model):
    """The leader lease: one row per lease name; taken with a conditional UPDATE."""

    name: models.CharField[str, str] = models.CharField(max_length=64, primary_key=True)
    holder: models.CharField[str, str] = models.CharField(max_length=200, blank=True)
    expires_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()
    renewed_at: models.DateTimeField[datetime, datetime] = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.holder or 'nobody'} until {self.expires_at.isoformat()}"

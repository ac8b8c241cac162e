"""The broker's one table: a row per message, in one of three states.

Life of a row::

    enqueue ──> READY ──claim──> CLAIMED ──ack──> (deleted: acked rows are pruned at once)
                  ^                 │  │
                  │   lease expired │  └──nack──> DEAD ──admin "requeue"──> READY
                  └─────────────────┘

A READY row with ``available_at`` in the future is *delayed*. A CLAIMED row belongs to
``lease_owner`` until ``lease_expires_at``; the owner renews the lease while the function runs.

``message_id`` (Dramatiq's id) is deliberately not unique: a retry enqueues the same message
id again before the failed delivery is acked, so two rows may briefly carry it. Every update
is guarded by the row's primary key and state (and owner), never by the message id.
"""

from __future__ import annotations

import logging
from datetime import datetime

import dramatiq
from django.db import models
from django.utils import timezone

from .. import base

logger = logging.getLogger("pygigo.db")


class State(models.TextChoices):
    READY = "ready", "ready"
    CLAIMED = "claimed", "claimed"
    DEAD = "dead", "dead"


class MessageQuerySet(models.QuerySet["Message"]):
    def requeue(self) -> int:
        """Put the dead messages of this queryset back on their queues, to run now with a
        fresh retry budget and expiry, signed again by the installed :class:`~..base.Sealer`.
        Returns how many were requeued. Rows in other states are left alone (a ready or
        running message must not be duplicated), and so are dead letters that no longer
        verify: one kept with its secrets masked, or altered at rest."""
        count = 0
        now = timezone.now()
        for row in self.filter(state=State.DEAD).only("id", "body"):
            try:
                # Dramatiq's Retries middleware counts failures in options.retries; without the
                # reset, the first new failure would dead-letter the message again.
                message = base.sealer().reseal(dramatiq.Message.decode(row.body.encode()), {"retries": 0})
            except base.PygigoError as exc:
                logger.warning("Dead message %s left dead: %s", row.pk, exc)
                continue
            count += (
                type(self)(self.model, using=self.db)
                .filter(pk=row.pk, state=State.DEAD)
                .update(
                    state=State.READY,
                    available_at=now,
                    dead_at=None,
                    deliveries=0,  # else the poison guard counts the earlier runs against it
                    error="",
                    body=message.encode().decode("utf-8"),
                )
            )
        return count


class Message(models.Model):
    """One Dramatiq message stored by the ``db://`` broker."""

    queue_name: models.CharField[str, str] = models.CharField(max_length=255)
    message_id: models.CharField[str, str] = models.CharField(
        max_length=64, db_index=True, help_text="Dramatiq's message id"
    )
    actor_name: models.CharField[str, str] = models.CharField(max_length=255)
    state: models.CharField[str, str] = models.CharField(
        max_length=8, choices=State.choices, default=State.READY
    )
    priority: models.SmallIntegerField[int, int] = models.SmallIntegerField(
        default=0, help_text="higher runs first"
    )
    enqueued_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(default=timezone.now)
    available_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        default=timezone.now, help_text="not claimed before this time"
    )
    lease_owner: models.CharField[str, str] = models.CharField(
        max_length=255, blank=True, default="", help_text="host/pid/broker"
    )
    lease_expires_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    deliveries: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(
        default=0, help_text="times a worker claimed it"
    )
    dead_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        null=True, blank=True
    )
    error: models.TextField[str, str] = models.TextField(
        blank=True, default="", help_text="why it was dead-lettered"
    )
    body: models.TextField[str, str] = models.TextField(help_text="the encoded Dramatiq message (JSON)")

    objects: MessageQuerySet = MessageQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        db_table = "pygigo_db_message"
        verbose_name = "queued message"
        indexes = [
            # Claiming: WHERE queue_name=… AND state='ready' AND available_at<=now
            # ORDER BY priority DESC, available_at, id.
            models.Index(
                fields=["queue_name", "state", "-priority", "available_at", "id"], name="pygigo_db_claim"
            ),
            # Lease renewal and expiry.
            models.Index(fields=["lease_owner", "state"], name="pygigo_db_owner"),
            models.Index(fields=["state", "lease_expires_at"], name="pygigo_db_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} on {self.queue_name} ({self.state}, #{self.pk})"

"""Maintenance of the db:// broker's table, run by the scheduler's built-in jobs.

Acknowledged rows are deleted when they are acknowledged, so what needs pruning is dead
letters: they are kept ``older_than_s`` (7 days by default, like Redis and RabbitMQ) for the
admin's requeue action, then deleted.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from .models import Message, State

logger = logging.getLogger("pygigo.adapters.db")

WEEK_S = 7 * 24 * 3600


def requeue_expired(alias: str = "default") -> int:
    """Make ready again every claimed message whose lease expired (its worker died), on every
    queue — also those no live consumer serves, which consumers' own sweeps never reach."""
    count = (
        Message.objects.using(alias)
        .filter(state=State.CLAIMED, lease_expires_at__lt=timezone.now())
        .update(state=State.READY, lease_owner="", lease_expires_at=None)
    )
    if count:
        logger.warning("%d message(s) outlived their lease; delivering them again.", count)
    return int(count)


def prune_dead_letters(older_than_s: float = WEEK_S, alias: str = "default") -> int:
    """Delete dead letters that died more than ``older_than_s`` seconds ago."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    deleted, _ = Message.objects.using(alias).filter(state=State.DEAD, dead_at__lt=cutoff).delete()
    return int(deleted)

"""The Pygigo app's tables: invocations (life cycle, result, outbox) and API keys.

``Invocation`` is both the record of one envelope's life cycle and the outbox: a row is
written (``relayed=False``, with the sealed envelope in ``wire``) *before* the message is
sent, and flagged ``relayed=True`` once the broker has it. A row the broker never got is
sent later by :mod:`pygigo.django_site.outbox`. Workers deduplicate by the row's status, so
a message sent twice still runs once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"


#: Statuses after which nothing more happens to an invocation.
TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.CANCELLED})
#: Statuses from which a worker may (re)start it.
STARTABLE = (Status.QUEUED, Status.RETRYING)


class Invocation(models.Model):
    """One envelope's life cycle: queued → running → succeeded | failed | retrying → dead,
    or cancelled before it started.

    ``principal`` is ``"user:<id>"``, ``"key:<id>"`` or ``"anonymous"``: who made it, for
    visibility and idempotency. ``result`` is the response dict for ``kind=http`` and the
    return value for ``kind=call``. ``envelope`` is the envelope with secrets masked (for
    people); ``wire`` is the sealed envelope, kept only until the broker has it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    function = models.CharField(max_length=200, db_index=True)
    queue = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, default="http")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    principal = models.CharField(max_length=64, default="anonymous")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    #: While running: which delivery holds it (host/pid/token) and when it last said so.
    #: A redelivery takes over only once the holder's heartbeat is stale (see tracking).
    holder = models.CharField(max_length=128, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    envelope = models.JSONField(default=dict, blank=True)
    wire = models.TextField(blank=True, default="")
    relayed = models.BooleanField(default=False)
    #: When a relay took this row to send it (two relays never send one row at once).
    relay_claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            # Same key + same principal = same invocation, enforced by the database so two
            # concurrent requests cannot both create one.
            models.UniqueConstraint(
                fields=("principal", "idempotency_key"),
                condition=models.Q(idempotency_key__isnull=False),
                name="pygigo_invocation_idempotency",
            )
        ]
        indexes = [models.Index(fields=("relayed", "created_at"), name="pygigo_inv_outbox")]

    def __str__(self) -> str:
        return f"{self.function} {self.id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def as_json(self) -> dict[str, Any]:
        """The public status document (``GET /invocations/<id>``)."""

        def iso(value: Any) -> str | None:
            return value.isoformat() if value else None

        ident = str(self.id)
        return {
            "id": ident,
            "function": self.function,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "finished_at": iso(self.finished_at),
            # The first line; the traceback after it is for staff (admin), not API callers.
            "error": self.error.split("\n", 1)[0] or None,
            "links": {"self": f"/invocations/{ident}", "result": f"/invocations/{ident}/result"},
        }


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiKey(models.Model):
    """An API key: ``pgk_<prefix>_<secret>``. Only the SHA-256 of the whole key is stored;
    the prefix (unique, not secret) finds the row, a constant-time compare checks it.

    A key acts for its ``user`` (staff rights included) when it has one; otherwise it is a
    service principal of its own (``key:<id>``) without staff rights.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed = models.CharField(max_length=64, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (pgk_{self.prefix}_…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def generate(cls, name: str, user: Any = None) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the raw key, which is shown once and never stored."""
        prefix = secrets.token_hex(4)
        raw = f"pgk_{prefix}_{secrets.token_urlsafe(32)}"
        return cls.objects.create(name=name, prefix=prefix, hashed=_hash(raw), user=user), raw

    @classmethod
    def lookup(cls, raw: str) -> ApiKey | None:
        """The active key ``raw`` names, or None (unknown, malformed, revoked, wrong secret, or
        its user was deactivated: a key never outlives its owner's access)."""
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "pgk":
            return None
        key = cls.objects.select_related("user").filter(prefix=parts[1], revoked_at__isnull=True).first()
        if key is None or not hmac.compare_digest(key.hashed, _hash(raw)):
            return None
        if key.user is not None and not key.user.is_active:
            return None
        return key

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])

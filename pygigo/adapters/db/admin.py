"""Admin for the ``db://`` broker's messages: see what is queued, running and dead, and put
dead letters back on their queue."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
from django.contrib import admin, messages
from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .. import base
from . import doorbell
from .models import Message, State


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "queue_name",
        "actor_name",
        "state",
        "priority",
        "available_at",
        "deliveries",
        "lease_owner",
        "short_error",
    )
    list_filter = ("state", "queue_name", "actor_name")
    search_fields = ("message_id", "actor_name", "queue_name")
    ordering = ("-id",)
    actions = ("requeue",)
    # Body and error only as the installed redactor shows them: a message still queued holds
    # the secrets its run needs (forwarded credentials, sensitive arguments).
    fields = readonly_fields = (
        *(field.name for field in Message._meta.fields if field.name not in ("body", "error")),
        "shown_error",
        "shown_body",
    )

    @admin.display(description="error")
    def short_error(self, obj: Message) -> str:
        error = self.shown_error(obj)
        return error if len(error) <= 80 else error[:77] + "…"

    @admin.display(description="why it was dead-lettered")
    def shown_error(self, obj: Message) -> str:
        message = _decoded(obj)
        return obj.error if message is None else base.redactor().text(obj.error, message)

    @admin.display(description="the Dramatiq message (secrets masked)")
    def shown_body(self, obj: Message) -> str:
        message = _decoded(obj)
        if message is None:  # not a message: nothing in it is known to be secret
            return format_html("<pre>{}</pre>", obj.body)
        shown = base.redactor().message(message).asdict()
        return format_html("<pre>{}</pre>", json.dumps(shown, indent=2, ensure_ascii=False))

    @admin.action(description="Requeue selected dead messages (fresh retries)", permissions=["requeue"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        alias = queryset.db
        dead = queryset.filter(state=State.DEAD)
        queues = set(dead.values_list("queue_name", flat=True))
        with transaction.atomic(using=alias):
            selected, dead_count = queryset.count(), dead.count()
            count = Message.objects.using(alias).filter(pk__in=dead.values("pk")).requeue()
            for queue_name in queues:  # wake idle PostgreSQL workers at commit
                doorbell.ring(connections[alias], queue_name)
        self.message_user(request, f"Requeued {count} dead message(s).", messages.SUCCESS)
        if selected > dead_count:
            self.message_user(
                request, f"Left {selected - dead_count} message(s) that are not dead.", messages.WARNING
            )
        if dead_count > count:
            self.message_user(
                request,
                f"Left {dead_count - count} dead message(s) whose signature no longer verifies (kept "
                "with their secrets masked, or altered): send them again from your code.",
                messages.WARNING,
            )

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"{Message._meta.app_label}.change_message"))  # type: ignore[union-attr]

    # Messages are written by the broker; the admin reads, requeues and deletes them.
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _decoded(row: Message) -> dramatiq.Message[Any] | None:
    try:
        return dramatiq.Message.decode(row.body.encode("utf-8"))
    except dramatiq.errors.DecodeError:
        return None

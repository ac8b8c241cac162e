"""Admin for the ``db://`` broker's messages: see what is queued, running and dead, and put
dead letters back on their queue."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import connections, transaction
from django.db.models import QuerySet
from django.http import HttpRequest

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
    readonly_fields = [field.name for field in Message._meta.fields]

    @admin.display(description="error")
    def short_error(self, obj: Message) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:77] + "…"

    @admin.action(description="Requeue selected dead messages (fresh retries)", permissions=["requeue"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        alias = queryset.db
        dead = queryset.filter(state=State.DEAD)
        queues = set(dead.values_list("queue_name", flat=True))
        with transaction.atomic(using=alias):
            count = Message.objects.using(alias).filter(pk__in=dead.values("pk")).requeue()
            for queue_name in queues:  # wake idle PostgreSQL workers at commit
                doorbell.ring(connections[alias], queue_name)
        skipped = queryset.count() - count
        self.message_user(request, f"Requeued {count} dead message(s).", messages.SUCCESS)
        if skipped > 0:
            self.message_user(request, f"Left {skipped} message(s) that are not dead.", messages.WARNING)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"{Message._meta.app_label}.change_message"))  # type: ignore[union-attr]

    # Messages are written by the broker; the admin reads, requeues and deletes them.
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""Admin: invocations (filters, masked envelope, re-run and cancel actions) and API keys
(created here with the raw key shown once, revoked with an action)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.html import format_html

from pygigo.platform import redaction

from . import dashboard, queues, store
from .models import ApiKey, Invocation


@admin.register(Invocation)
class InvocationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "function",
        "status",
        "attempts",
        "principal",
        "created_at",
        "heartbeat_at",
        "finished_at",
        "relayed",
    )
    list_filter = ("status", "function", "queue", "relayed", ("created_at", admin.DateFieldListFilter))
    search_fields = ("id", "function", "principal", "idempotency_key")
    date_hierarchy = "created_at"
    actions = ("rerun", "cancel")
    # The envelope is shown pretty-printed and masked; the sealed wire copy never.
    exclude = ("wire", "envelope", "result")
    readonly_fields = (
        "id",
        "function",
        "queue",
        "kind",
        "status",
        "attempts",
        "principal",
        "idempotency_key",
        "created_at",
        "started_at",
        "holder",
        "heartbeat_at",
        "finished_at",
        "error",
        "relayed",
        "result_pretty",
        "envelope_pretty",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invocations come from the API, fn.invoke or a re-run

    def get_urls(self) -> list[URLPattern]:
        # The queue page lives in whichever admin site the project registers Pygigo with
        # (`admin:pygigo-queues`), so the app never mounts an admin of its own.
        # The dashboard likewise (`admin:pygigo-dashboard`).
        view = self.admin_site.admin_view
        pages = [
            path("queues/", view(self.queues_view), name="pygigo-queues"),
            path("dashboard/", view(self.dashboard_view), name="pygigo-dashboard"),
            path("dashboard/data/", view(dashboard.data), name="pygigo-dashboard-data"),
        ]
        return [*pages, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        return dashboard.page(request, self.admin_site)

    def queues_view(self, request: HttpRequest) -> HttpResponse:
        return queues.queues_page(request, self.admin_site)

    @admin.display(description="result (secrets masked)")
    def result_pretty(self, obj: Invocation) -> str:
        result = obj.result
        if obj.kind == "http" and isinstance(result, dict) and isinstance(result.get("headers"), list):
            # The client gets its Set-Cookie with the result; people reading the admin do not.
            result = dict(result, headers=redaction.mask_headers(result["headers"]))
        return format_html("<pre>{}</pre>", json.dumps(result, indent=2, ensure_ascii=False))

    @admin.display(description="envelope (secrets masked)")
    def envelope_pretty(self, obj: Invocation) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.envelope, indent=2, ensure_ascii=False))

    @admin.action(description="Re-run selected invocations (as new invocations)")
    def rerun(self, request: HttpRequest, queryset: QuerySet[Invocation]) -> None:
        created, failed = 0, []
        for invocation in queryset:
            try:
                store.rerun(invocation)
                created += 1
            except Exception as exc:  # report per row; one bad row must not stop the rest
                failed.append(f"{invocation.id}: {exc}")
        if created:
            self.message_user(request, f"Re-ran {created} invocation(s).", messages.SUCCESS)
        for line in failed:
            self.message_user(request, f"Could not re-run {line}", messages.ERROR)

    @admin.action(description="Cancel selected invocations (if not started)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Invocation]) -> None:
        cancelled = sum(store.cancel(invocation.id) for invocation in queryset)
        skipped = queryset.count() - cancelled
        self.message_user(request, f"Cancelled {cancelled}; {skipped} had already started or finished.")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "user__username")
    fields = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = ApiKey.generate(obj.name, obj.user)
        obj.pk, obj.prefix, obj.hashed, obj.created_at = key.pk, key.prefix, key.hashed, key.created_at
        obj._state.adding = False
        self.message_user(
            request, f"API key created. Copy it now, it is not shown again: {raw}", messages.WARNING
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()
        self.message_user(request, "Revoked.")

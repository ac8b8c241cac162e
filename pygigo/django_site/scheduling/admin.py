"""Admin: schedules are editable (validated by Schedule.clean: bad expression, timezone or
function is a form error on that field); run records and the lease are read-only."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin

from pygigo.platform.cron import describe
from pygigo.platform.schedules import ScheduleConfigError

from .models import Schedule, SchedulerLease, ScheduleRun


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "function",
        "expression",
        "timezone",
        "misfire",
        "enabled",
        "last_fired_slot",
        "next_run",
    )
    list_filter = ("enabled", "misfire")
    search_fields = ("name", "function")
    readonly_fields = ("last_fired_slot", "created_at", "updated_at")

    @admin.display(description="next run")
    def next_run(self, obj: Schedule) -> str:
        if not obj.enabled:
            return "-"
        try:
            upcoming = describe(obj.to_spec().slots, datetime.now(UTC), 1)
        except ScheduleConfigError as exc:
            return f"invalid: {exc}"
        return upcoming[0].isoformat() if upcoming else "never"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(ScheduleRun)
class ScheduleRunAdmin(ReadOnlyAdmin):
    list_display = ("schedule", "slot", "status", "attempts", "holder", "finished_at", "message_id")
    list_filter = ("status", "schedule")
    search_fields = ("schedule", "message_id")


@admin.register(SchedulerLease)
class SchedulerLeaseAdmin(ReadOnlyAdmin):
    list_display = ("name", "holder", "expires_at", "renewed_at")

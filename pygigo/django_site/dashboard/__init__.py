"""The staff dashboard at ``/admin/pygigo/invocation/dashboard/``, in the admin's look.

The page draws its charts with uPlot (vendored under ``static/pygigo/vendor``) and polls
``data/`` every ``PYGIGO_DASHBOARD_POLL_S`` seconds (default 5) for new numbers, so it updates
without a reload. The numbers are the metrics' own (:mod:`.series`), the workers' heartbeat
files, the schedule store and the invocation table (recent failures).
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from pygigo.platform import liveness, metrics
from pygigo.platform import settings as pygigo_settings

from ..models import Invocation, Status
from ..status import queues, scheduler
from .series import History

RECENT_FAILURES = 10


def poll_s() -> float:
    return float(pygigo_settings.setting("PYGIGO_DASHBOARD_POLL_S") or 5.0)


_history = History()


def recent_failures() -> list[dict[str, Any]]:
    rows = Invocation.objects.filter(status__in=(Status.FAILED, Status.DEAD)).order_by("-finished_at")
    return [
        {
            "id": str(row.id),
            "function": row.function,
            "status": row.status,
            "error": row.error[:200],
            "finished_at": row.finished_at.isoformat(timespec="seconds") if row.finished_at else None,
            "url": reverse("admin:pygigo_invocation_change", args=[row.pk]),
        }
        for row in rows.only("id", "function", "status", "error", "finished_at")[:RECENT_FAILURES]
    ]


def data(request: HttpRequest) -> JsonResponse:
    _history.update(min_interval_s=poll_s() / 2)
    return JsonResponse(
        {
            "metrics_enabled": metrics.families() is not None,
            "series": _history.series(),
            "queues": queues(),
            "workers": list(liveness.read_heartbeats()),
            "scheduler": scheduler(),
            "recent_failures": recent_failures(),
        }
    )


def page(request: HttpRequest, admin_site: AdminSite) -> HttpResponse:
    """The page, in ``admin_site``'s frame (the caller checks the user is staff)."""
    context = {
        **admin_site.each_context(request),
        "title": "Pygigo dashboard",
        "data_url": reverse(f"{admin_site.name}:pygigo-dashboard-data"),
        "poll_ms": int(poll_s() * 1000),
        "metrics_enabled": metrics.families() is not None,
    }
    return render(request, "pygigo/dashboard.html", context)

"""The admin's queue page: ready, delayed and dead-lettered messages per queue, as bars.

Staff only, at ``/admin/pygigo/invocation/queues/`` of the project's own admin site
(:class:`~pygigo.django_site.admin.InvocationAdmin` mounts it). Reads ``queue_stats`` of the configured broker for
the queues of the loaded functions (``PYGIGO_FUNCTIONS``), so it works on every broker.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from pygigo.adapters.base import PygigoError
from pygigo.platform import runtime
from pygigo.platform.registry import registry


def queue_rows() -> tuple[list[dict[str, Any]], str | None]:
    """One row per queue with its counts and bar widths (percent of the largest count)."""
    broker = runtime.get_broker()
    rows: list[dict[str, Any]] = []
    try:
        for queue in sorted(registry.queues()):
            stats = broker.queue_stats(queue)
            rows.append({"queue": queue, "ready": stats.ready, "delayed": stats.delayed, "dead": stats.dead})
    except (PygigoError, NotImplementedError) as exc:
        return rows, f"The {broker.scheme}:// broker cannot be read: {exc}"
    largest = max([1, *(row[k] for row in rows for k in ("ready", "delayed", "dead"))])
    for row in rows:
        for kind in ("ready", "delayed", "dead"):
            row[f"{kind}_pct"] = round(100 * row[kind] / largest, 1)
    return rows, None


def queues_page(request: HttpRequest, admin_site: AdminSite) -> HttpResponse:
    """The page, in ``admin_site``'s frame (the caller checks the user is staff)."""
    rows, error = queue_rows()
    context = {
        **admin_site.each_context(request),
        "title": "Queues",
        "rows": rows,
        "error": error,
        "broker": runtime.get_broker().scheme,
        "total_dead": sum(row["dead"] for row in rows),
    }
    return render(request, "pygigo/queues.html", context)

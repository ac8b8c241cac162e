"""Health and metrics endpoints of the web process, and what it records for them.

* ``GET /healthz``: the process answers (no I/O), for liveness probes.
* ``GET /readyz``: the database answers, every migration is applied and the broker answers;
  ``200`` or ``503`` with each check's outcome, for readiness probes and load balancers.
* ``GET /metrics``: the Prometheus exposition (``docs/metrics.md``) for staff sessions or
  ``Authorization: Bearer <PYGIGO_METRICS["token"]>``; ``404`` while metrics are off.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Any

from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse

from pygigo.adapters.base import PygigoError
from pygigo.platform import metrics, runtime
from pygigo.platform.metrics import exposition

from . import outbox
from .api.errors import ApiError


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> str | None:
    connections["default"].ensure_connection()
    return None


def _migrations() -> str | None:
    executor = MigrationExecutor(connections["default"])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5])
        return f"{len(plan)} migration(s) not applied ({names}); run manage.py migrate"
    return None


def _broker() -> str | None:
    runtime.get_broker().ping()
    return None


READINESS: dict[str, Callable[[], str | None]] = {
    "database": _database,
    "migrations": _migrations,
    "broker": _broker,
}


def readiness() -> dict[str, dict[str, Any]]:
    """Each check: ``{"ok": bool}`` plus a ``detail`` saying what is wrong."""
    results: dict[str, dict[str, Any]] = {}
    for name, check in READINESS.items():
        try:
            problem = check()
        except (DatabaseError, PygigoError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        results[name] = {"ok": problem is None, **({"detail": problem} if problem else {})}
    return results


def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness()
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


class OutboxCollector:
    """``pygigo_outbox_backlog``: invocations accepted but not yet handed to the broker."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "pygigo_outbox_backlog", "Accepted invocations waiting in the outbox.", value=outbox.pending()
        )


def _may_scrape(request: HttpRequest, token: str | None) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    presented = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(presented.encode(), f"Bearer {token}".encode())


def metrics_view(request: HttpRequest) -> HttpResponseBase:
    config = metrics.config()
    if not config.enabled:
        return ApiError(
            404,
            "metrics_disabled",
            'Metrics are off: set PYGIGO_METRICS = {"enabled": True} to turn them on.',
        ).response()
    if not _may_scrape(request, config.token):
        return ApiError(
            401,
            "not_authenticated",
            'Scraping /metrics needs a staff session or "Authorization: Bearer <token>" with the token '
            'of PYGIGO_METRICS["token"].',
            headers={"WWW-Authenticate": "Bearer"},
        ).response()
    body, content_type = exposition.exposition(extra=[OutboxCollector()])
    return HttpResponse(body, content_type=content_type)

"""One module per system; each exposes ``measure(cfg) -> list[Result]``, run in its own child process."""

from __future__ import annotations

SYSTEMS: dict[str, str] = {
    "raw_dramatiq": "bench.systems.raw_dramatiq",
    "celery": "bench.systems.celery_sys",
    "raw_client": "bench.systems.raw_client",
    "pygigo": "bench.systems.pygigo_sys",
    "django_tasks": "bench.systems.django_tasks_sys",
    "pygigo_metrics": "bench.systems.pygigo_metrics_sys",
}

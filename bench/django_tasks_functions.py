"""A no-op Django task on Pygigo's task backend (``pygigo worker bench.django_tasks_functions``);
settings from ``bench.tasks_settings``, broker from ``PYGIGO_BROKER_URL``."""

from __future__ import annotations

import os

from bench.completion import record

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task  # type: ignore[no-redef]

QUEUE = os.environ.get("BENCH_QUEUE", "bench")


@task(queue_name=QUEUE)
def noop() -> None:
    record()

"""The default site plus Pygigo's task backend serving the benchmark's queue."""

from __future__ import annotations

import os

from pygigo.default_site.settings import *  # noqa: F403

TASKS = {
    "default": {
        "BACKEND": "pygigo.django_site.tasks.PygigoBackend",
        "QUEUES": [os.environ.get("BENCH_QUEUE", "bench")],
    }
}

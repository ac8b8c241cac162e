"""Django tasks on Pygigo: ``task.enqueue()`` (a tracked invocation: one row in a fresh SQLite
database, then one message) and ``pygigo worker`` draining them (2 processes x 8 threads), so
the row can be set side by side with ``fn.send()`` (untracked) and raw Dramatiq."""

from __future__ import annotations

import os
import sys

from bench import services
from bench.common import REPO_ROOT, BenchConfig, Result, WorkerGroup, cleanup, measure_drain, time_enqueue


def measure(cfg: BenchConfig) -> list[Result]:
    result = Result(cfg.broker, "django_tasks", "Pygigo django.tasks (task.enqueue)")
    q = cfg.queue
    with services.sqlite_files() as files:
        env = {**files.fresh(), "DJANGO_SETTINGS_MODULE": "bench.tasks_settings"}
        os.environ.update(env)
        import django

        django.setup()
        with cleanup(cfg, rabbit_queues=[q, f"{q}.DQ", f"{q}.XQ"] if cfg.broker == "rabbitmq" else []):
            from bench import django_tasks_functions as fns

            result.enqueue_rate = time_enqueue(fns.noop.enqueue, cfg.messages, "django.tasks")
            argv = [sys.executable, "-m", "pygigo", "worker", "bench.django_tasks_functions"]
            argv += ["--processes", "2", "--threads", "8", "--queues", q]
            workers = WorkerGroup(argv, cfg, "django_tasks", extra_env={**env, "PYTHONPATH": str(REPO_ROOT)})
            stats = measure_drain(cfg, workers, cfg.messages + 1, "django.tasks")
            result.drain_rate = stats.pop("drain_rate")
            result.extra = stats
    return [result]

"""Django tasks on Pygigo: ``task.enqueue()`` (a tracked invocation: one row in a fresh SQLite
database, then one message) and ``pygigo worker`` draining them (2 processes x 8 threads), so
the row can be set side by side with ``fn.send()`` (untracked) and raw Dramatiq. A second row,
``fn.invoke()`` of a Pygigo function in the same database, is the same tracked path without
Django's task layer: the two together show what tracking costs and what the task layer adds."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import redis

from bench import services
from bench.common import REPO_ROOT, BenchConfig, Result, WorkerGroup, cleanup, measure_drain, time_enqueue


def measure(cfg: BenchConfig) -> list[Result]:
    result = Result(cfg.broker, "django_tasks", "Pygigo django.tasks (task.enqueue)")
    tracked = Result(cfg.broker, "pygigo_tracked", "Pygigo tracked (fn.invoke)")
    q = cfg.queue
    with services.sqlite_files() as files:
        env = {**files.fresh(), "DJANGO_SETTINGS_MODULE": "bench.tasks_settings"}
        os.environ.update(env)
        import django

        django.setup()
        with cleanup(cfg, rabbit_queues=[q, f"{q}.DQ", f"{q}.XQ"] if cfg.broker == "rabbitmq" else []):
            from bench import django_tasks_functions as fns

            _measure(cfg, result, fns.noop.enqueue, "bench.django_tasks_functions", env)
            from bench import pygigo_functions

            redis.Redis.from_url(cfg.redis_url).delete(cfg.counter_key)
            _measure(cfg, tracked, pygigo_functions.noop.invoke, "bench.pygigo_functions", env)
    return [result, tracked]


def _measure(
    cfg: BenchConfig, result: Result, enqueue: Callable[[], Any], module: str, env: dict[str, str]
) -> None:
    result.enqueue_rate = time_enqueue(enqueue, cfg.messages, result.label)
    argv = [sys.executable, "-m", "pygigo", "worker", module, "--processes", "2", "--threads", "8"]
    argv += ["--queues", cfg.queue]
    workers = WorkerGroup(argv, cfg, result.key, extra_env={**env, "PYTHONPATH": str(REPO_ROOT)})
    stats = measure_drain(cfg, workers, cfg.messages + 1, result.label)
    result.drain_rate = stats.pop("drain_rate")
    result.extra = stats

"""Celery 5: ``task.delay()`` enqueue; ``celery worker --pool prefork -c 2`` for the drain."""

from __future__ import annotations

import sys

from bench.common import BenchConfig, Result, WorkerGroup, cleanup, measure_drain, time_enqueue


def measure(cfg: BenchConfig) -> list[Result]:
    q = cfg.queue
    rabbit = cfg.broker == "rabbitmq"
    with cleanup(cfg, rabbit_queues=[q] if rabbit else [], rabbit_exchanges=[q] if rabbit else []):
        from bench import celery_functions as fns

        result = Result(cfg.broker, "celery", "Celery prefork -c 2" + (" (no confirms)" if rabbit else ""))
        result.enqueue_rate = time_enqueue(fns.noop.delay, cfg.messages, "Celery")
        fns.app.pool.force_close_all()
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_functions",
            "worker",
            "--pool",
            "prefork",
            "-c",
            "2",
            "-Q",
            q,
            "-n",
            f"{q}@%h",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        stats = measure_drain(cfg, WorkerGroup(argv, cfg, "celery"), cfg.messages + 1, "Celery")
        result.drain_rate = stats.pop("drain_rate")
        result.extra = stats
        return [result]

"""Raw Dramatiq: ``actor.send()`` enqueue; ``dramatiq`` CLI with 2 processes x 8 threads for the drain."""

from __future__ import annotations

import sys

from bench.common import BenchConfig, Result, WorkerGroup, cleanup, measure_drain, time_enqueue


def label(cfg: BenchConfig) -> str:
    return "raw Dramatiq (confirm_delivery)" if cfg.broker == "rabbitmq" else "raw Dramatiq"


def measure(cfg: BenchConfig) -> list[Result]:
    q = cfg.queue
    with cleanup(cfg, rabbit_queues=[q, f"{q}.DQ", f"{q}.XQ"] if cfg.broker == "rabbitmq" else []):
        from bench import dramatiq_functions as fns

        result = Result(cfg.broker, "raw_dramatiq", label(cfg))
        result.enqueue_rate = time_enqueue(fns.noop.send, cfg.messages, "raw Dramatiq")
        fns.broker.close()
        argv = [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.dramatiq_functions",
            "--processes",
            "2",
            "--threads",
            "8",
            "--queues",
            q,
        ]
        stats = measure_drain(cfg, WorkerGroup(argv, cfg, "dramatiq"), cfg.messages + 1, "raw Dramatiq")
        result.drain_rate = stats.pop("drain_rate")
        result.extra = stats
        return [result]

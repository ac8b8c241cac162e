"""Pygigo: ``fn.send()`` enqueue; ``pygigo worker bench.pygigo_functions --processes 2 --threads 8``.

Guarded: when ``pygigo.function`` cannot be imported the row is reported as *unavailable*.
``--pygigo-src DIR`` (``BENCH_PYGIGO_SRC``) puts a Pygigo checkout first on the path of this child
and of the workers (the workers also run with that directory as cwd, so it wins over the repo root).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygigo
from bench.common import REPO_ROOT, BenchConfig, Result, WorkerGroup, cleanup, measure_drain, time_enqueue


def available(cfg: BenchConfig) -> str:
    """Empty string when usable, else the reason."""
    if cfg.pygigo_src:
        sys.path.insert(0, cfg.pygigo_src)
    try:
        pygigo.function  # noqa: B018
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def measure(cfg: BenchConfig) -> list[Result]:
    result = Result(cfg.broker, "pygigo", "Pygigo")
    reason = available(cfg)
    if reason:
        result.status, result.note = "unavailable", reason
        return [result]
    if cfg.broker_url.startswith("db:"):  # the database broker needs Django set up (run.py sets the env)
        import django

        django.setup()
    q = cfg.queue
    with cleanup(cfg, rabbit_queues=[q, f"{q}.DQ", f"{q}.XQ"] if cfg.broker == "rabbitmq" else []):
        from bench import pygigo_functions as fns

        result.enqueue_rate = time_enqueue(fns.noop.send, cfg.messages, "Pygigo")
        cwd = Path(cfg.pygigo_src) if cfg.pygigo_src else REPO_ROOT
        path = os.pathsep.join(p for p in (cfg.pygigo_src, str(REPO_ROOT)) if p)
        argv = [
            sys.executable,
            "-m",
            "pygigo",
            "worker",
            "bench.pygigo_functions",
            "--processes",
            "2",
            "--threads",
            "8",
            "--queues",
            q,
        ]
        workers = WorkerGroup(argv, cfg, "pygigo", cwd=cwd, extra_env={"PYTHONPATH": path})
        stats = measure_drain(cfg, workers, cfg.messages + 1, "Pygigo")
        result.drain_rate = stats.pop("drain_rate")
        result.extra = stats
        how = " = SendMessageBatch x10" if cfg.broker == "sqs" else ""
        bulk = Result(cfg.broker, "pygigo_bulk", f"Pygigo send_many ({BATCH} per call{how})")
        bulk.enqueue_rate = (
            time_enqueue(_batches(fns.noop, cfg.messages), cfg.messages // BATCH, "Pygigo bulk") * BATCH
        )
        pygigo.get_broker().flush(q)
        return [result, bulk]


BATCH = 100


def _batches(function: Any, total: int) -> Callable[[], object]:
    """One call = one ``send_many`` of BATCH no-op calls."""
    calls = [()] * BATCH

    def send() -> object:
        return function.send_many(calls)

    return send

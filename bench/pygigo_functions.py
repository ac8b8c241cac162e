"""Pygigo no-op function (``pygigo worker bench.pygigo_functions``); broker from ``PYGIGO_BROKER_URL``."""

from __future__ import annotations

import os

import pygigo
from bench.completion import record

QUEUE = os.environ.get("BENCH_QUEUE", "bench")


@pygigo.function(name="noop", queue=QUEUE)
def noop() -> None:
    record()

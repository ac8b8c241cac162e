"""Pygigo with Prometheus metrics on (``PYGIGO_METRICS``): the same drain as ``pygigo_sys``,
so the Redis table shows what recording every message's metrics costs (target: >= 0.95x the
Pygigo row of the same run). No metrics port: the workers record; nothing scrapes."""

from __future__ import annotations

import json
import os

from bench.common import BenchConfig, Result
from bench.systems import pygigo_sys


def measure(cfg: BenchConfig) -> list[Result]:
    # Set before the first broker is built: this child's sends and its workers record metrics.
    os.environ["PYGIGO_METRICS"] = json.dumps({"enabled": True, "port": None})
    drain = pygigo_sys.measure(cfg)[0]  # the bulk-enqueue row is the same as Pygigo's
    drain.key, drain.label = "pygigo_metrics", "Pygigo, metrics on"
    return [drain]

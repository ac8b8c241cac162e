"""The dashboard's charts over the last hour, built from the metrics themselves.

Each poll of the dashboard takes a *sample*: the cumulative counters and run-time histogram
buckets Pygigo records for Prometheus (:func:`exposition.recorded`) plus the queue gauges
(``queue_stats`` through the adapter contract). The charts are the differences between
consecutive samples, the way Prometheus' ``rate()`` and ``histogram_quantile()`` read them:
no second bookkeeping. Samples live in this web process's memory (one hour, at most one per
half poll interval); a restarted process starts a fresh hour.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time
from collections import deque
from typing import Any

from pygigo.platform.metrics.exposition import queue_stats, recorded

WINDOW_S = 3600.0


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    runs: dict[str, float]  # function -> attempts finished (succeeded + failed)
    failed: dict[str, float]
    buckets: dict[float, float]  # run-time upper bound (s) -> attempts at most that long, all functions
    depth: dict[str, int]  # queue -> ready
    oldest_age_s: dict[str, float | None]


def take_sample() -> Sample:
    runs: dict[str, float] = {}
    failed: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in recorded():
        for sample in family.samples:
            function = sample.labels.get("function", "")
            if sample.name in ("pygigo_messages_succeeded_total", "pygigo_messages_failed_total"):
                runs[function] = runs.get(function, 0.0) + sample.value
                if sample.name == "pygigo_messages_failed_total":
                    failed[function] = failed.get(function, 0.0) + sample.value
            elif sample.name == "pygigo_run_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    stats = queue_stats()
    return Sample(
        at=time.time(),
        runs=runs,
        failed=failed,
        buckets=buckets,
        depth={queue: counts.ready for queue, counts in stats.items()},
        oldest_age_s={queue: counts.oldest_ready_age_s for queue, counts in stats.items()},
    )


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile``: the q-quantile of cumulative bucket counts, interpolated
    linearly inside its bucket; None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def _delta(new: dict[Any, float], old: dict[Any, float]) -> dict[Any, float]:
    # max(0, …): a counter that went back (its process restarted) counts from zero.
    return {key: max(0.0, value - old.get(key, 0.0)) for key, value in new.items()}


class History:
    """The last hour of samples, and the chart series they give. Thread-safe."""

    def __init__(self) -> None:
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()

    def update(self, min_interval_s: float) -> None:
        """Take a sample unless the last one is newer than ``min_interval_s`` (several open
        dashboards poll; the hour holds a bounded number of samples)."""
        with self._lock:
            if self._samples and time.time() - self._samples[-1].at < min_interval_s:
                return
        sample = take_sample()
        with self._lock:
            self._samples.append(sample)
            while self._samples and sample.at - self._samples[0].at > WINDOW_S:
                self._samples.popleft()

    def series(self) -> dict[str, Any]:
        """Chart data: per interval between two samples (its end time in ``t``)."""
        with self._lock:
            samples = list(self._samples)
        functions = sorted({name for s in samples for name in s.runs})
        queues = sorted({name for s in samples for name in s.depth})
        out: dict[str, Any] = {
            "t": [],
            "throughput": {name: [] for name in functions},
            "failures": {name: [] for name in functions},
            "p50_s": [],
            "p95_s": [],
            "depth": {name: [] for name in queues},
            "oldest_age_s": {name: [] for name in queues},
        }
        for old, new in itertools.pairwise(samples):
            elapsed = max(new.at - old.at, 1e-6)
            runs, failed, buckets = (
                _delta(new.runs, old.runs),
                _delta(new.failed, old.failed),
                _delta(new.buckets, old.buckets),
            )
            out["t"].append(new.at)
            for name in functions:
                out["throughput"][name].append(round(runs.get(name, 0.0) / elapsed, 3))
                out["failures"][name].append(failed.get(name, 0.0))
            out["p50_s"].append(quantile(0.5, buckets))
            out["p95_s"].append(quantile(0.95, buckets))
            for name in queues:
                out["depth"][name].append(new.depth.get(name))
                out["oldest_age_s"][name].append(new.oldest_age_s.get(name))
        return out

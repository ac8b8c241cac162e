"""Per-message metric updates, tallied in memory and applied to Prometheus in batches.

In multiprocess mode every update of a prometheus_client value is a locked write to a
memory-mapped file (about 4 µs; 10 µs per histogram observation) and a message needs several:
enough to cost a busy worker several percent of its throughput. So the middleware's hooks
add to plain tallies under one lock, and a flusher thread applies them every ``FLUSH_S``
seconds; a scrape of this process applies them first (:func:`..flush`), a scrape of another
process sees them at most ``FLUSH_S`` late. Exit applies what is left.
"""

from __future__ import annotations

import atexit
import bisect
import threading
import time

from . import DURATION_BUCKETS, Families, on_scrape

FLUSH_S = 1.0
#: Counters and the in-flight gauge, by their attribute name on :class:`Families`.
COUNTS = ("enqueued", "started", "succeeded", "failed", "retried", "dead_lettered", "in_flight")
HISTOGRAMS = ("run_seconds", "latency_seconds")

Labels = tuple[str, str]


class _Series:
    """One (function, queue): its labelled children (``labels()`` is looked up once: it
    costs more than an update) and what waits to be applied to them."""

    def __init__(self, families: Families, labels: Labels) -> None:
        self.children = {name: getattr(families, name).labels(*labels) for name in (*COUNTS, *HISTOGRAMS)}
        self.counts = dict.fromkeys(COUNTS, 0.0)
        # Per histogram: observations per bucket (Prometheus' bounds) and their sum.
        self.buckets = {name: [0] * len(DURATION_BUCKETS) for name in HISTOGRAMS}
        self.sums = dict.fromkeys(HISTOGRAMS, 0.0)

    def apply(self) -> None:
        for name, amount in self.counts.items():
            if amount:
                self.children[name].inc(amount)  # the in-flight gauge's inc takes negatives
                self.counts[name] = 0.0
        for name, counts in self.buckets.items():
            if not any(counts):
                continue
            child = self.children[name]
            # prometheus_client has no bulk observe; observe() adds the amount to _sum and 1
            # to the bucket it falls in (_buckets, not cumulative): the same, n at a time.
            child._sum.inc(self.sums[name])
            for index, count in enumerate(counts):
                if count:
                    child._buckets[index].inc(count)
            self.buckets[name] = [0] * len(DURATION_BUCKETS)
            self.sums[name] = 0.0


class Tally:
    """The tallies of one process. Thread-safe."""

    def __init__(self, families: Families) -> None:
        self.families = families
        self._series: dict[Labels, _Series] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        on_scrape(self.flush)
        atexit.register(self.flush)

    def _get(self, labels: Labels) -> _Series:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(self.families, labels)
        if self._flusher is None:  # started by the first update: after any fork
            self._flusher = threading.Thread(target=self._run, name="pygigo-metrics-flush", daemon=True)
            self._flusher.start()
        return series

    def add(self, labels: Labels, name: str, amount: float = 1.0) -> None:
        with self._lock:
            self._get(labels).counts[name] += amount

    def start(self, labels: Labels) -> None:
        """A run started: ``started`` and ``in_flight`` up by one (one lock, not two)."""
        with self._lock:
            counts = self._get(labels).counts
            counts["started"] += 1
            counts["in_flight"] += 1

    def finish(self, labels: Labels, counted: tuple[str, ...], run_s: float, latency_s: float | None) -> None:
        """A run ended: ``in_flight`` down, each of ``counted`` up, its run time (and, when it
        finished for good, its latency) observed — under one lock."""
        # Prometheus' rule: the first bucket whose upper bound is >= the amount.
        run_index = bisect.bisect_left(DURATION_BUCKETS, run_s)
        with self._lock:
            series = self._get(labels)
            series.counts["in_flight"] -= 1
            for name in counted:
                series.counts[name] += 1
            series.buckets["run_seconds"][run_index] += 1
            series.sums["run_seconds"] += run_s
            if latency_s is not None:
                series.buckets["latency_seconds"][bisect.bisect_left(DURATION_BUCKETS, latency_s)] += 1
                series.sums["latency_seconds"] += latency_s

    def flush(self) -> None:
        with self._lock:
            for series in self._series.values():
                series.apply()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            self.flush()

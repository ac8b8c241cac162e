"""Scraping: the text a Prometheus server reads, and the port workers and schedulers serve.

A scrape collects Pygigo's families (from every process's files in multiprocess mode, else
from this process) plus *live* collectors that ask at scrape time: queue depth and oldest
age through the adapter contract (every broker answers the same question), and whatever
the caller adds (the web process adds the outbox backlog).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ...adapters.base import PygigoError, QueueStats
from .. import runtime
from ..registry import registry
from . import before_scrape, config, families

logger = logging.getLogger("pygigo.metrics")

QUEUE_GAUGES = (
    ("pygigo_queue_ready", "Messages waiting to run.", "ready"),
    ("pygigo_queue_delayed", "Messages waiting for their delay or retry backoff.", "delayed"),
    ("pygigo_queue_dead", "Dead-lettered messages.", "dead"),
    ("pygigo_queue_oldest_ready_age_seconds", "Age of the oldest ready message.", "oldest_ready_age_s"),
)


def queue_stats() -> dict[str, QueueStats]:
    """``queue_stats`` of every queue of the loaded functions; a queue that cannot be read
    is left out (and logged) rather than failing the whole scrape."""
    broker = runtime.get_broker()
    stats = {}
    for queue in sorted(registry.queues()):
        try:
            stats[queue] = broker.queue_stats(queue)
        except (PygigoError, NotImplementedError) as exc:
            logger.warning("metrics: cannot read queue %s: %s", queue, exc)
    return stats


class QueueCollector:
    """Queue depth and oldest ready age per queue, read from the broker at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        stats = queue_stats()
        for name, doc, field in QUEUE_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["queue"])
            for queue, counts in stats.items():
                value = getattr(counts, field)
                if value is not None:  # SQS has no oldest age (see its adapter)
                    family.add_metric([queue], float(value))
            yield family


def recorded() -> Iterable[Any]:
    """Pygigo's recorded metric families: every process's (multiprocess mode, read from
    ``PROMETHEUS_MULTIPROC_DIR``) or this process's. Empty while metrics are off."""
    before_scrape()  # this process's tallies; other processes' are at most a flush late
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        return MultiProcessCollector(None).collect()
    own = families()
    return own.registry.collect() if own is not None else ()


class _Recorded:
    def collect(self) -> Iterable[Any]:
        return recorded()


def scrape_registry(extra: Iterable[Any] = ()) -> Any:
    """A registry holding everything one scrape reports."""
    from prometheus_client import CollectorRegistry

    scraped = CollectorRegistry(auto_describe=False)
    for collector in (_Recorded(), QueueCollector(), *extra):
        scraped.register(collector)
    return scraped


def exposition(extra: Iterable[Any] = ()) -> tuple[bytes, str]:
    """(body, content type) of a scrape."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(scrape_registry(extra)), CONTENT_TYPE_LATEST


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "Scrape /metrics")
            return
        body, content_type = exposition()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def serve(host: str, port: int) -> None:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread (the scheduler's port)."""
    server = ThreadingHTTPServer((host, port), _Handler)
    threading.Thread(target=server.serve_forever, name="pygigo-metrics", daemon=True).start()
    logger.info("metrics: serving http://%s:%d/metrics", host, port)


def serve_worker_port() -> int:
    """Dramatiq fork function (``--fork-function``) of ``pygigo worker``: one process per
    worker group serves the port, summing the worker processes' files (Dramatiq's own
    Prometheus middleware does the same). Runs until Dramatiq's main process stops it."""
    settings = config()
    server = ThreadingHTTPServer((settings.host, settings.port or 0), _Handler)
    server.serve_forever()
    return 0

"""Worker liveness: a heartbeat file per worker process that goes stale when its consumers
stop fetching, not only when the process dies.

A worker can be alive yet consume nothing (a consumer thread stuck after a broker
reconnect): a process check passes, the queue grows. So each worker process rewrites
``<PYGIGO_HEARTBEAT_DIR>/<host>-<pid>.json`` every few seconds *only while every one of
its consumers has returned from a fetch within* ``PYGIGO_HEARTBEAT_STALE_S`` (an idle
consumer returns after its poll timeout, so idle is not stale). The file's ``beat_at`` (and
its mtime) is the last time the whole process was consuming; ``pygigo status`` and the
dashboard read these files. A clean shutdown removes the file; a killed worker leaves it to
go stale.

Kubernetes liveness probe (exec), for a pod running one worker process group::

    pygigo status --workers-only
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from . import settings


class _StampingConsumer:
    """Wraps a broker's consumer; notes when each fetch returns."""

    def __init__(self, consumer: Any, stamps: dict[str, float], queue_name: str) -> None:
        self._consumer, self._stamps, self._queue = consumer, stamps, queue_name
        stamps[queue_name] = time.monotonic()

    def __iter__(self) -> _StampingConsumer:
        return self

    def __next__(self) -> Any:
        message = next(self._consumer)
        self._stamps[self._queue] = time.monotonic()
        return message

    def __getattr__(self, name: str) -> Any:  # ack, nack, requeue, close
        return getattr(self._consumer, name)


class ConsumerHeartbeat(Middleware):
    """Writes this worker process's heartbeat file (see the module docstring)."""

    def __init__(self, directory: str, stale_after_s: float) -> None:
        self.path = Path(directory) / f"{socket.gethostname()}-{os.getpid()}.json"
        self.stale_after_s = stale_after_s
        self.stamps: dict[str, float] = {}
        self._stop = threading.Event()
        self._started_at, self._threads = time.time(), 0

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Dramatiq has no per-fetch hook: wrap the consumers this worker's threads create.
        if not hasattr(broker, "_unstamped_consume"):
            consume = broker._unstamped_consume = broker.consume  # type: ignore[attr-defined]

            def stamping_consume(queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Any:
                return _StampingConsumer(consume(queue_name, prefetch, timeout), self.stamps, queue_name)

            broker.consume = stamping_consume  # type: ignore[method-assign]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._started_at = time.time()
        self._threads = getattr(worker, "worker_threads", 0)
        self._stop = threading.Event()
        self.write()  # booting counts as alive; from now on only fetching consumers keep it fresh
        threading.Thread(target=self._beat, args=(self._stop,), name="pygigo-heartbeat", daemon=True).start()

    def _beat(self, stop: threading.Event) -> None:
        interval = min(5.0, self.stale_after_s / 4)
        while True:
            if self.consuming():
                self.write()
            if stop.wait(interval):
                return

    def consuming(self) -> bool:
        now = time.monotonic()
        stamps = list(self.stamps.values())
        return bool(stamps) and all(now - stamp < self.stale_after_s for stamp in stamps)

    def write(self) -> None:
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": sorted(self.stamps),
            "threads": self._threads,
            "started_at": self._started_at,
            "beat_at": time.time(),
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, self.path)  # readers never see half a file

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def heartbeat_middleware() -> ConsumerHeartbeat | None:
    directory = settings.heartbeat_dir()
    return ConsumerHeartbeat(directory, settings.heartbeat_stale_s()) if directory else None


def read_heartbeats() -> Iterator[dict[str, Any]]:
    """Every worker heartbeat of ``PYGIGO_HEARTBEAT_DIR``, each with ``age_s`` and ``stale``."""
    directory = settings.heartbeat_dir()
    if not directory:  # heartbeats are off
        return
    folder = Path(directory)
    stale_after_s = settings.heartbeat_stale_s()
    now = time.time()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed or replaced while listing
        record["age_s"] = max(0.0, now - float(record.get("beat_at", 0)))
        record["stale"] = record["age_s"] > stale_after_s
        yield record

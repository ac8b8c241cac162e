"""Functions the conformance suite runs, in-process and in worker subprocesses.

Queue names carry the test run's id so concurrent runs sharing a Redis or RabbitMQ never see
each other's messages. Results go to ``record``: in memory for in-process workers, and as files
under a directory passed in the arguments for worker subprocesses.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"conf-{RUN}"
SLOW_QUEUE = f"conf-slow-{RUN}"


class Recorder:
    """Thread-safe record of calls, with waiting for a count instead of sleeping."""

    def __init__(self) -> None:
        self._calls: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self._cond = threading.Condition()

    def add(self, key: str, value: Any) -> None:
        with self._cond:
            self._calls[key].append((time.time(), value))
            self._cond.notify_all()

    def calls(self, key: str) -> list[tuple[float, Any]]:
        with self._cond:
            return list(self._calls[key])

    def wait_for(self, key: str, count: int, timeout: float = 15.0) -> list[tuple[float, Any]]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._calls[key]) >= count, timeout=timeout)
            if not ok:
                raise AssertionError(
                    f"{key!r}: {len(self._calls[key])} calls after {timeout}s, expected {count}"
                )
            return list(self._calls[key])

    def clear(self) -> None:
        with self._cond:
            self._calls.clear()


record = Recorder()


@pygigo.function(queue=QUEUE)
def echo(key: str, *args: Any, **kwargs: Any) -> None:
    record.add(key, {"args": list(args), "kwargs": kwargs})


@pygigo.function(queue=QUEUE)
def add_one(value: int) -> int:
    return value + 1


@pygigo.function(queue=QUEUE, store_results=True)
def square(value: int) -> int:
    return value * value


@pygigo.function(queue=QUEUE, max_retries=2, min_backoff_s=0.05, max_backoff_s=0.2)
def always_fails(key: str) -> None:
    record.add(key, None)
    raise RuntimeError("this function always fails")


@pygigo.function(queue=QUEUE, priority=0)
def low(key: str) -> None:
    record.add(key, "low")


@pygigo.function(queue=QUEUE, priority=9)
def high(key: str) -> None:
    record.add(key, "high")


@pygigo.function(queue=SLOW_QUEUE)
def slow(key: str, seconds: float) -> None:
    record.add(key + ":started", None)
    time.sleep(seconds)
    record.add(key, None)


# One retry: a run its worker died in counts against max_retries (poison-message cap).
@pygigo.function(queue=SLOW_QUEUE, max_retries=1, time_limit_s=120)
def hold(directory: str) -> None:
    """Cross-process: mark the start (one file per attempt), wait for release, mark done."""
    path = Path(directory)
    (path / f"started-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + 60
    while not (path / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.02)
    (path / f"done-{os.getpid()}").touch()

"""Shared plumbing: run configuration, results, progress line, timing, worker processes, cleanup.

Everything a system module needs to measure *enqueue* and *drain* the same way:

* ``time_enqueue``: one untimed warm-up send, then ``n`` timed sends from one thread.
* ``measure_drain``: the no-op function of every system INCRs one Redis counter per completed
  message; the clock starts at the first poll that sees a non-zero counter (``t0``, ``c0``) and
  stops at the first poll that sees all messages done (``tN``); rate = ``(total - c0) / (tN - t0)``.
  Worker boot time is therefore excluded identically for every system.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = REPO_ROOT / "bench" / "results" / "logs"
POLL_S = 0.005


@dataclass(frozen=True)
class BenchConfig:
    """One (broker, system) measurement, passed to children and workers through ``BENCH_*`` env vars."""

    broker: str  # "redis" | "rabbitmq" | "sqlite" | "postgres" | "sqs" | "http"
    broker_url: str
    redis_url: str  # where the completion counter lives (always Redis)
    queue: str  # unique per run and system; every key/queue we create contains it
    messages: int
    pygigo_src: str = ""
    #: Extra environment for the child and its workers (Django settings, database, AWS test keys).
    extra_env: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def counter_key(self) -> str:
        return f"{self.queue}:done"

    def to_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BENCH_BROKER=self.broker,
            BENCH_BROKER_URL=self.broker_url,
            BENCH_REDIS_URL=self.redis_url,
            BENCH_QUEUE=self.queue,
            BENCH_MESSAGES=str(self.messages),
            BENCH_PYGIGO_SRC=self.pygigo_src,
            PYGIGO_BROKER_URL=self.broker_url,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    @classmethod
    def from_env(cls) -> BenchConfig:
        e = os.environ
        return cls(
            broker=e["BENCH_BROKER"],
            broker_url=e["BENCH_BROKER_URL"],
            redis_url=e["BENCH_REDIS_URL"],
            queue=e.get("BENCH_QUEUE", "bench"),
            messages=int(e.get("BENCH_MESSAGES", "5000")),
            pygigo_src=e.get("BENCH_PYGIGO_SRC", ""),
        )


@dataclass
class Result:
    """One table row. ``key`` identifies the row for ratios (raw_dramatiq, celery, pika_confirms, ...)."""

    broker: str
    key: str
    label: str
    enqueue_rate: float | None = None
    drain_rate: float | None = None
    status: str = "ok"  # ok | unavailable | error
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Progress:
    """A self-updating status line on stderr while a long step runs; the caller sets ``value``."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.value = label, total, 0
        self._stop = threading.Event()
        self._tty = sys.stderr.isatty()
        self._t0 = time.perf_counter()

    def _line(self) -> str:
        return f"  {self.label}: {self.value}/{self.total}  {time.perf_counter() - self._t0:5.1f}s"

    def _loop(self) -> None:
        interval = 0.2 if self._tty else 5.0
        while not self._stop.wait(interval):
            sys.stderr.write("\x1b[2K" + self._line() + "\r" if self._tty else self._line() + "\n")
            sys.stderr.flush()

    def __enter__(self) -> Progress:
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        sys.stderr.write(("\x1b[2K" if self._tty else "") + self._line() + " done\n")
        sys.stderr.flush()


def time_enqueue(send: Callable[[], object], n: int, label: str) -> float:
    """Messages/s of ``n`` sends, one at a time from this thread, after one untimed warm-up send."""
    send()
    with Progress(f"{label} enqueue", n) as progress:
        t0 = time.perf_counter()
        for i in range(n):
            send()
            progress.value = i + 1
        elapsed = time.perf_counter() - t0
    return n / elapsed


class WorkerGroup:
    """A worker CLI started in its own session; stopped with SIGTERM (then SIGKILL) on its process group."""

    def __init__(
        self,
        argv: Sequence[str],
        cfg: BenchConfig,
        name: str,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.argv, self.cfg, self.cwd = list(argv), cfg, cwd or REPO_ROOT
        self.env = {**cfg.to_env(), **(extra_env or {})}
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{cfg.queue}-{cfg.broker}-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerGroup:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the child's own pid
        with suppress(ProcessLookupError):
            os.kill(pgid, signal.SIGTERM)  # the CLI's main process forwards it to its workers
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout_s)
        with suppress(ProcessLookupError):  # stragglers (or a CLI that ignored SIGTERM)
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class DrainError(RuntimeError):
    pass


def measure_drain(cfg: BenchConfig, workers: WorkerGroup, total: int, label: str) -> dict[str, float]:
    """Start ``workers`` on the pre-filled queue and time completions from the first to the ``total``-th."""
    counter = redis.Redis.from_url(cfg.redis_url)
    timeout_s = 60 + total / 50
    t0: float | None = None
    c0 = 0
    samples: list[tuple[float, int]] = []
    with Progress(f"{label} drain", total) as progress, workers:
        t_start = time.perf_counter()
        while True:
            count = int(counter.get(cfg.counter_key) or 0)
            now = time.perf_counter()
            progress.value = count
            samples.append((now, count))
            if count and t0 is None:
                t0, c0 = now, count
            if count >= total:
                break
            if now - t_start > timeout_s or not workers.alive():
                why = "timed out" if workers.alive() else "worker exited"
                raise DrainError(f"{why} at {count}/{total}; log {workers.log_path}:\n{workers.log_tail()}")
            time.sleep(POLL_S)
        assert t0 is not None
        workers.stop()
    final = int(counter.get(cfg.counter_key) or 0)
    return {
        "drain_rate": (total - c0) / max(now - t0, 1e-9),
        "boot_s": t0 - t_start,
        "drain_s": now - t0,
        "first_seen": c0,
        "drain_rate_10_90": window_rate(samples, total),
        "duplicates": final - total,
    }


def window_rate(samples: Sequence[tuple[float, int]], total: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Steady-state rate between the polls that first saw ``lo`` and ``hi`` of ``total`` done."""
    t_lo = next((t, c) for t, c in samples if c >= lo * total)
    t_hi = next((t, c) for t, c in samples if c >= hi * total)
    return (t_hi[1] - t_lo[1]) / max(t_hi[0] - t_lo[0], 1e-9)


@contextmanager
def cleanup(
    cfg: BenchConfig, rabbit_queues: Sequence[str] = (), rabbit_exchanges: Sequence[str] = ()
) -> Iterator[None]:
    """After the block: delete every Redis key containing ``cfg.queue`` and the given RabbitMQ queues."""
    try:
        yield
    finally:
        client = redis.Redis.from_url(cfg.redis_url)
        keys = list(client.scan_iter(match=f"*{cfg.queue}*", count=1000))
        if keys:
            client.delete(*keys)
        if rabbit_queues or rabbit_exchanges:
            delete_rabbit(cfg, rabbit_queues, rabbit_exchanges)


def delete_rabbit(cfg: BenchConfig, queues: Sequence[str], exchanges: Sequence[str]) -> None:
    import pika  # only needed for RabbitMQ runs

    url = cfg.broker_url if cfg.broker == "rabbitmq" else "amqp://guest:guest@127.0.0.1:5672/%2F"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = conn.channel()
                with suppress(pika.exceptions.ChannelClosedByBroker):
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                if channel.is_open:
                    channel.close()
    finally:
        conn.close()

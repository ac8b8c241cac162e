"""HTTP rows: the site served by gunicorn (``-w 2``, sync workers), hit from this process.

* Throughput, per invocation store (SQLite, PostgreSQL) and broker (Redis, RabbitMQ):
  ``GET /healthz`` (bare Django JSON view), ``POST /bench/reference`` (the physical limit: one
  INSERT of an invocation-sized row, one publish; ``bench/http_urls.py``) and ``POST /fn/noop``
  (202 Accepted) on the same server, ``requests`` each from ``clients`` threads, one new
  connection per request (gunicorn's sync workers close after each response). Two alternating
  halves per endpoint, so load drift hits all. No worker runs: the accept path is measured alone.
* Latency: ``POST /fn/noop`` with ``Prefer: wait=5``, sequential, one client; a
  ``pygigo worker bench.http_functions -p 1 -t 4`` runs on the same broker and database, so each
  request is HTTP -> database -> broker -> worker -> database -> HTTP.

Every server gets a fresh migrated database (a SQLite file, or a PostgreSQL schema) and a unique
queue (``BENCH_QUEUE``).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import BenchConfig, Progress, WorkerGroup, cleanup
from bench.services import SqliteFiles, gunicorn, postgres_schema

HTTP_ENV = {
    "DJANGO_DEBUG": "0",
    "PYGIGO_RATE_LIMIT": "100000000/1",
    "PYGIGO_FUNCTIONS": "bench.http_functions",
    "PYGIGO_LOG_LEVEL": "WARNING",
}
#: The default site plus the reference view.
HTTP_SETTINGS = {"DJANGO_SETTINGS_MODULE": "bench.http_settings"}
WAIT_HEADERS = {"Prefer": "wait=5", "Content-Length": "0"}


@dataclass
class HttpResult:
    kind: str  # "throughput" | "latency"
    key: str  # throughput: "bare" | "reference" | "fn"; latency: the broker
    label: str
    setup: str = ""  # throughput: "<store>, <broker>"
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    requests: int = 0
    errors: int = 0
    status: str = "ok"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def call(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    """One request on a new connection; the status code."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def hammer(
    port: int, method: str, path: str, n: int, clients: int, expect: int
) -> tuple[float, Counter[Any]]:
    """``n`` requests from ``clients`` threads; (elapsed seconds, statuses)."""
    ticket = itertools.count()
    statuses: Counter[Any] = Counter()
    lock = threading.Lock()
    headers = {"Content-Length": "0"} if method == "POST" else {}

    def loop() -> None:
        mine: Counter[Any] = Counter()
        while next(ticket) < n:
            try:
                mine[call(port, method, path, headers)] += 1
            except OSError as exc:
                mine[type(exc).__name__] += 1
        with lock:
            statuses.update(mine)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, statuses


def throughput(cfg: BenchConfig, requests: int, clients: int, setup: str) -> list[HttpResult]:
    endpoints = [
        ("bare", "GET /healthz (bare Django JSON view)", "GET", "/healthz", 200),
        ("reference", "POST /bench/reference (1 INSERT + 1 publish)", "POST", "/bench/reference", 202),
        ("fn", "POST /fn/noop (202)", "POST", "/fn/noop", 202),
    ]
    elapsed = dict.fromkeys([e[0] for e in endpoints], 0.0)
    statuses: dict[str, Counter[Any]] = {e[0]: Counter() for e in endpoints}
    queues = [*rabbit_queues(cfg), f"{cfg.queue}_ref"] if cfg.broker == "rabbitmq" else []
    with cleanup(cfg, rabbit_queues=queues), gunicorn(cfg) as port:
        for _, _, method, path, _ in endpoints:  # warm-up: imports, connections, first queries
            hammer(port, method, path, 50, clients, 0)
        half = requests // 2
        with Progress(f"HTTP throughput, {setup}", 2 * len(endpoints) * half) as progress:
            for _ in range(2):
                for key, _, method, path, expect in endpoints:
                    took, seen = hammer(port, method, path, half, clients, expect)
                    elapsed[key] += took
                    statuses[key].update(seen)
                    progress.value += half
    results = []
    for key, label, _, _, expect in endpoints:
        errors = sum(c for s, c in statuses[key].items() if s != expect)
        result = HttpResult(
            "throughput", key, label, setup, rps=2 * half / elapsed[key], requests=2 * half, errors=errors
        )
        if errors:
            result.note = f"statuses {dict(statuses[key])}"
        results.append(result)
    return results


def latency(cfg: BenchConfig, requests: int, max_s: float) -> HttpResult:
    """Up to ``requests`` sequential round trips, stopping early after ``max_s`` seconds."""
    result = HttpResult("latency", cfg.broker, label_of(cfg))
    argv = [sys.executable, "-m", "pygigo", "worker", "bench.http_functions", "-p", "1", "-t", "4"]
    worker = WorkerGroup(argv, cfg, "pygigo-worker")
    with cleanup(cfg, rabbit_queues=rabbit_queues(cfg)), gunicorn(cfg) as port, worker:
        deadline = time.monotonic() + 60
        while call(port, "POST", "/fn/noop", WAIT_HEADERS) != 200:  # until the worker answers
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"worker never answered; log {worker.log_path}:\n{worker.log_tail()}")
        warm_until = time.monotonic() + 2
        for _ in range(20):
            call(port, "POST", "/fn/noop", WAIT_HEADERS)
            if time.monotonic() > warm_until:
                break
        times: list[float] = []
        statuses: Counter[Any] = Counter()
        stop_at = time.perf_counter() + max_s
        with Progress(f"Prefer: wait on {cfg.broker}", requests) as progress:
            for i in range(requests):
                t0 = time.perf_counter()
                status = call(port, "POST", "/fn/noop", WAIT_HEADERS)
                times.append(time.perf_counter() - t0)
                statuses[status] += 1
                progress.value = i + 1
                if t0 > stop_at:
                    break
    ok = sorted(t * 1000 for t in times)
    result.requests = len(times)
    result.errors = len(times) - statuses[200]
    if result.errors:
        result.note = f"statuses {dict(statuses)}"
    if len(times) < requests:
        result.note = (result.note + "; " if result.note else "") + f"stopped after {max_s:.0f} s"
    result.p50_ms = percentile(ok, 50)
    result.p99_ms = percentile(ok, 99)
    result.mean_ms = statistics.fmean(ok)
    return result


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


STORE_LABELS = {"sqlite": "SQLite store", "postgres": "PostgreSQL store"}


def label_of_broker(broker: str) -> str:
    return {"redis": "Redis", "rabbitmq": "RabbitMQ", "sqlite": "db:// (SQLite)"}.get(broker, broker)


def label_of(cfg: BenchConfig) -> str:
    return label_of_broker(cfg.broker)


def rabbit_queues(cfg: BenchConfig) -> list[str]:
    q = cfg.queue
    return [q, f"{q}.DQ", f"{q}.XQ"] if cfg.broker == "rabbitmq" else []


def run(
    *,
    run_id: str,
    urls: dict[str, str],
    redis_url: str,
    sqlite: SqliteFiles,
    postgres_db: str,
    throughput_brokers: Iterable[str],
    throughput_stores: Iterable[str],
    latency_brokers: Iterable[str],
    requests: int,
    clients: int,
    wait_requests: int,
    wait_max_s: float,
) -> list[HttpResult]:
    """All HTTP rows; a failing part becomes an ``error`` row and the rest still runs."""

    def config(broker: str, part: str, store_env: dict[str, str]) -> BenchConfig:
        env = {**HTTP_ENV, **store_env, **HTTP_SETTINGS}
        return BenchConfig(
            broker, urls[broker], redis_url, f"bench_{run_id}_http_{part}", requests, extra_env=env
        )

    results: list[HttpResult] = []
    for store in throughput_stores:
        for broker in throughput_brokers:
            setup = f"{STORE_LABELS[store]}, {label_of_broker(broker)}"
            sys.stderr.write(f"[http] throughput, gunicorn -w 2, {setup}\n")
            part = f"tp_{store}_{broker}"
            try:
                with contextlib.ExitStack() as stack:
                    if store == "postgres":
                        store_env = stack.enter_context(postgres_schema(f"{run_id}_{part}", postgres_db))
                    else:
                        store_env = sqlite.fresh()
                    results.extend(throughput(config(broker, part, store_env), requests, clients, setup))
            except Exception as exc:
                results.append(
                    HttpResult("throughput", "fn", "throughput", setup, status="error", note=repr(exc)[:300])
                )
    for broker in latency_brokers:
        sys.stderr.write(f"[http] Prefer: wait latency, broker {broker}\n")
        cfg = config(broker, f"wait_{broker}", sqlite.fresh())
        try:
            results.append(latency(cfg, wait_requests, wait_max_s))
        except Exception as exc:
            results.append(HttpResult("latency", broker, label_of(cfg), status="error", note=repr(exc)[:300]))
    return results

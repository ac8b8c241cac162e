"""Entry point of the benchmarks.

    python -m bench.run [--messages 5000] [--brokers redis,rabbitmq,sqlite,postgres,sqs]
                        [--systems ...] [--http throughput,latency] [--json out.json]

For each broker, each system runs in its own child process (``bench.child``) with a unique queue name,
then one table per broker (one for both db:// rows) is printed, then the HTTP tables.
See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import http_bench, services
from bench.common import REPO_ROOT, BenchConfig, Result
from bench.report import db_table, http_tables, sqs_table, table
from bench.systems import SYSTEMS

BROKER_URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "sqlite": "db://",
    "postgres": "db://",
    "sqs": "",  # set once moto is up
}
SYSTEM_ORDER = ("raw_dramatiq", "celery", "raw_client", "pygigo", "django_tasks", "pygigo_metrics")
#: Which systems exist on which broker (the db:// broker is Pygigo's own; on SQS only boto3 and Pygigo;
#: the metrics-on row runs on Redis, where the issue sets its target).
BROKER_SYSTEMS = {
    "redis": SYSTEM_ORDER,
    "rabbitmq": SYSTEM_ORDER[:-2],  # django_tasks and pygigo_metrics: Redis only
    "sqlite": ("pygigo",),
    "postgres": ("pygigo",),
    "sqs": ("raw_client", "pygigo"),
}
HTTP_PARTS = ("throughput", "latency")
WAIT_BROKERS = ("redis", "rabbitmq", "sqlite")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--messages", "-n", type=int, default=5000, help="messages per measurement (default 5000)")
    p.add_argument(
        "--brokers", default=",".join(BROKER_URLS), help="comma list of: " + ", ".join(BROKER_URLS)
    )
    p.add_argument("--systems", default=",".join(SYSTEM_ORDER), help="comma list of: " + ", ".join(SYSTEMS))
    p.add_argument("--repeat", "-r", type=int, default=1, help="rounds per broker; the table shows medians")
    p.add_argument("--json", type=Path, help="also write all results (with boot/drain details) here")
    p.add_argument("--redis-url", default=BROKER_URLS["redis"], help="Redis broker and completion counter")
    p.add_argument("--amqp-url", default=BROKER_URLS["rabbitmq"], help="RabbitMQ broker")
    p.add_argument("--pygigo-src", default="", help="directory holding the pygigo package to benchmark")
    p.add_argument(
        "--postgres-db", default="test", help="PostgreSQL database on 127.0.0.1:5432 (user postgres)"
    )
    p.add_argument("--sqs-messages", type=int, default=1000, help="messages per SQS (moto) measurement")
    p.add_argument(
        "--http", default=",".join(HTTP_PARTS), help="comma list of: throughput, latency ('' = none)"
    )
    p.add_argument("--http-requests", type=int, default=2000, help="requests per endpoint, throughput")
    p.add_argument("--http-clients", type=int, default=4, help="client threads, throughput")
    p.add_argument(
        "--http-brokers", default="redis,rabbitmq", help="brokers behind POST /fn/noop, throughput"
    )
    p.add_argument(
        "--http-stores", default="sqlite,postgres", help="invocation stores (databases), throughput"
    )
    p.add_argument(
        "--wait-requests", type=int, default=300, help="sequential Prefer: wait requests per broker"
    )
    p.add_argument("--wait-max-s", type=float, default=20.0, help="stop a broker's latency run after this")
    p.add_argument(
        "--wait-brokers", default=",".join(WAIT_BROKERS), help="comma list of: " + ", ".join(WAIT_BROKERS)
    )
    args = p.parse_args(argv)
    args.brokers = [b for b in args.brokers.split(",") if b]
    args.systems = [s for s in args.systems.split(",") if s]
    args.http = [h for h in args.http.split(",") if h]
    args.wait_brokers = [b for b in args.wait_brokers.split(",") if b]
    args.http_brokers = [b for b in args.http_brokers.split(",") if b]
    args.http_stores = [s for s in args.http_stores.split(",") if s]
    for name in args.http_stores:
        if name not in http_bench.STORE_LABELS:
            p.error(f"unknown --http-stores entry {name!r}; choose from {', '.join(http_bench.STORE_LABELS)}")
    for name in args.http:
        if name not in HTTP_PARTS:
            p.error(f"unknown --http part {name!r}; choose from {', '.join(HTTP_PARTS)}")
    for name in [*args.wait_brokers, *args.http_brokers]:
        if name not in WAIT_BROKERS:
            p.error(f"unknown HTTP broker {name!r}; choose from {', '.join(WAIT_BROKERS)}")
    for name in args.systems:
        if name not in SYSTEMS:
            p.error(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    for name in args.brokers:
        if name not in BROKER_URLS:
            p.error(f"unknown broker {name!r}; choose from {', '.join(BROKER_URLS)}")
    return args


def run_child(system: str, cfg: BenchConfig) -> list[Result]:
    """Run one system in a fresh interpreter; a crash becomes an 'error' row instead of stopping the run."""
    sys.stderr.write(f"[{cfg.broker}] {system} (queue {cfg.queue})\n")
    try:  # the child enforces its own drain timeout and stops its workers; this is a last resort
        proc = subprocess.run(
            [sys.executable, "-m", "bench.child", system],
            cwd=REPO_ROOT,
            env=cfg.to_env(),
            stdout=subprocess.PIPE,
            text=True,
            timeout=120 + cfg.messages / (1 if cfg.broker == "sqs" else 10),
        )
    except subprocess.TimeoutExpired:
        return [Result(cfg.broker, system, system, status="error", note="child timed out")]
    try:
        return [Result(**d) for d in json.loads(proc.stdout)]
    except (json.JSONDecodeError, TypeError):
        return [Result(cfg.broker, system, system, status="error", note=f"child exit {proc.returncode}")]


def median_of(rounds: list[list[Result]]) -> list[Result]:
    """Merge repeated rounds row by row: median rates; each round's row kept in ``extra["rounds"]``."""
    merged: list[Result] = []
    for row in zip(*rounds, strict=True):
        ok = [r for r in row if r.status == "ok"]
        if len(row) == 1 or not ok:
            merged.append(row[0])
            continue
        enq = [r.enqueue_rate for r in ok if r.enqueue_rate is not None]
        drain = [r.drain_rate for r in ok if r.drain_rate is not None]
        merged.append(
            Result(
                ok[0].broker,
                ok[0].key,
                ok[0].label,
                enqueue_rate=statistics.median(enq) if enq else None,
                drain_rate=statistics.median(drain) if drain else None,
                note="" if len(ok) == len(row) else f"{len(row) - len(ok)} round(s) failed",
                extra={"rounds": [r.to_dict() for r in row]},
            )
        )
    return merged


@contextmanager
def broker_env(args: argparse.Namespace, broker: str, run_id: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(URL, extra env) of ``broker``, with what it needs (a migrated database, moto) up for the
    block and removed after it (temp SQLite dir, PostgreSQL schema, moto process)."""
    if broker == "redis":
        yield args.redis_url, {}
    elif broker == "rabbitmq":
        yield args.amqp_url, {}
    elif broker == "sqlite":
        with services.sqlite_files() as files:
            yield BROKER_URLS["sqlite"], files.fresh()
    elif broker == "postgres":
        with services.postgres_schema(run_id, args.postgres_db) as env:
            yield BROKER_URLS["postgres"], env
    else:
        with services.moto_server(run_id) as (url, env):
            yield url, env


def run_broker(args: argparse.Namespace, broker: str, run_id: str) -> list[Result]:
    """All systems on one broker, ``--repeat`` rounds; rounds interleave systems (and rotate their
    order) so load drift hits all."""
    systems = [s for s in SYSTEM_ORDER if s in args.systems and s in BROKER_SYSTEMS[broker]]
    if not systems:
        return []
    messages = args.sqs_messages if broker == "sqs" else args.messages
    rounds: list[list[Result]] = []
    for n in range(args.repeat):
        by_system: dict[str, list[Result]] = {}
        # Each round starts one system later: a system that runs after the others (after
        # their leftovers in the broker) is not always the same one.
        shift = n % len(systems)
        for system in systems[shift:] + systems[:shift]:
            with ExitStack() as stack:
                try:
                    url, env = stack.enter_context(broker_env(args, broker, f"{run_id}{n}_{system}"))
                except Exception as exc:  # service missing: an error row, the rest still runs
                    by_system[system] = [
                        Result(broker, system, system, status="error", note=f"set-up: {exc!r}"[:300])
                    ]
                    continue
                cfg = BenchConfig(
                    broker=broker,
                    broker_url=url,
                    redis_url=args.redis_url,
                    queue=f"bench_{run_id}_{n}_{system}",
                    messages=messages,
                    pygigo_src=args.pygigo_src,
                    extra_env=env,
                )
                by_system[system] = run_child(system, cfg)
        rounds.append([row for system in systems for row in by_system[system]])
    return median_of(rounds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:8]
    # Every child, worker and web process signs and checks messages with the same fresh key
    # (the default site refuses its public development key with DEBUG off).
    os.environ.setdefault("PYGIGO_SIGNING_KEYS", secrets.token_hex(32))
    started = time.perf_counter()
    all_results: list[Result] = []
    tables = []
    for broker in args.brokers:
        results = run_broker(args, broker, run_id)
        all_results.extend(results)
        if broker in ("redis", "rabbitmq") and results:
            notes = [f"- {r.label}: {r.status}: {r.note}" for r in results if r.note]
            tables.append(
                "\n".join([table(broker, results, args.messages), *(["", *notes] if notes else [])])
            )
        elif broker == "sqs" and results:
            tables.append(sqs_table(results, args.sqs_messages))
    db_results = [r for r in all_results if r.broker in ("sqlite", "postgres")]
    if db_results:
        tables.insert(
            len([b for b in args.brokers if b in ("redis", "rabbitmq")]), db_table(all_results, args.messages)
        )
    http_results: list[http_bench.HttpResult] = []
    if args.http:
        with services.sqlite_files() as sqlite:
            http_results = http_bench.run(
                run_id=run_id,
                urls={**BROKER_URLS, "redis": args.redis_url, "rabbitmq": args.amqp_url},
                redis_url=args.redis_url,
                sqlite=sqlite,
                postgres_db=args.postgres_db,
                throughput_brokers=args.http_brokers if "throughput" in args.http else [],
                throughput_stores=args.http_stores,
                latency_brokers=args.wait_brokers if "latency" in args.http else [],
                requests=args.http_requests,
                clients=args.http_clients,
                wait_requests=args.wait_requests,
                wait_max_s=args.wait_max_s,
            )
        tables.append(http_tables(http_results, args))
    print("\n\n".join(tables))
    print(f"\n(run {run_id}, {time.perf_counter() - started:.0f} s wall)")
    if args.json:
        payload = {
            "run_id": run_id,
            "messages": args.messages,
            "sqs_messages": args.sqs_messages,
            "repeat": args.repeat,
            "results": [r.to_dict() for r in all_results],
            "http": [r.to_dict() for r in http_results],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Entry point of the benchmarks.

    python -m bench.run [--messages 5000] [--brokers redis,rabbitmq] [--systems ...] [--json out.json]

For each broker, each system runs in its own child process (``bench.child``) with a unique queue name,
then one table per broker is printed. See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.common import REPO_ROOT, BenchConfig, Result
from bench.report import table
from bench.systems import SYSTEMS

BROKER_URLS = {"redis": "redis://127.0.0.1:6379/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F"}
SYSTEM_ORDER = ("raw_dramatiq", "celery", "raw_client", "pygigo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--messages", "-n", type=int, default=5000, help="messages per measurement (default 5000)")
    p.add_argument("--brokers", default="redis,rabbitmq", help="comma list of: redis, rabbitmq")
    p.add_argument("--systems", default=",".join(SYSTEM_ORDER), help="comma list of: " + ", ".join(SYSTEMS))
    p.add_argument("--repeat", "-r", type=int, default=1, help="rounds per broker; the table shows medians")
    p.add_argument("--json", type=Path, help="also write all results (with boot/drain details) here")
    p.add_argument("--redis-url", default=BROKER_URLS["redis"], help="Redis broker and completion counter")
    p.add_argument("--amqp-url", default=BROKER_URLS["rabbitmq"], help="RabbitMQ broker")
    p.add_argument("--pygigo-src", default="", help="directory holding the pygigo package to benchmark")
    args = p.parse_args(argv)
    args.brokers = [b for b in args.brokers.split(",") if b]
    args.systems = [s for s in args.systems.split(",") if s]
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
            timeout=120 + cfg.messages / 10,
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


def run_broker(args: argparse.Namespace, broker: str, run_id: str) -> list[Result]:
    """All systems on one broker, ``--repeat`` rounds; rounds interleave systems so load drift hits all."""
    url = args.redis_url if broker == "redis" else args.amqp_url
    rounds: list[list[Result]] = []
    for n in range(args.repeat):
        results: list[Result] = []
        for system in [s for s in SYSTEM_ORDER if s in args.systems]:
            cfg = BenchConfig(
                broker=broker,
                broker_url=url,
                redis_url=args.redis_url,
                queue=f"bench_{run_id}_{n}_{system}",
                messages=args.messages,
                pygigo_src=args.pygigo_src,
            )
            results.extend(run_child(system, cfg))
        rounds.append(results)
    return median_of(rounds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    all_results: list[Result] = []
    tables = []
    for broker in args.brokers:
        results = run_broker(args, broker, run_id)
        all_results.extend(results)
        notes = [f"- {r.label}: {r.status}: {r.note}" for r in results if r.note]
        tables.append("\n".join([table(broker, results, args.messages), *(["", *notes] if notes else [])]))
    print("\n\n".join(tables))
    print(f"\n(run {run_id}, {time.perf_counter() - started:.0f} s wall)")
    if args.json:
        payload = {
            "run_id": run_id,
            "messages": args.messages,
            "repeat": args.repeat,
            "results": [r.to_dict() for r in all_results],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

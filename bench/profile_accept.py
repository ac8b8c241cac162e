"""Where one accepted request's time goes: ``POST /fn/noop`` in-process (Django's test client,
no server), next to the reference view (one INSERT + one publish) and ``GET /healthz``, then a
cProfile of the accept path: Pygigo's functions by cumulative time, in microseconds per request.

    python -m bench.profile_accept [--requests 2000] [--broker-url redis://127.0.0.1:6379/0]
                                   [--store sqlite|postgres]

Uses a fresh SQLite file in a temporary directory (or a fresh schema in the PostgreSQL database
``test``) and a queue of its own, all deleted afterwards. Also reports how much of the reference
view's time is its COMMIT: the most a group commit could save.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--top", type=int, default=25, help="Pygigo functions to list")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="pygigo-profile-"))
    args.queue = queue = f"profile_{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.http_settings",
        PYGIGO_SQLITE_PATH=str(directory / "db.sqlite3"),
        PYGIGO_SIGNING_KEYS=secrets.token_hex(32),
        PYGIGO_BROKER_URL=args.broker_url,
        PYGIGO_FUNCTIONS="bench.http_functions",
        BENCH_QUEUE=queue,
        PYGIGO_RATE_LIMIT="100000000/1",
        PYGIGO_LOG_LEVEL="WARNING",
        DJANGO_DEBUG="0",
    )
    with contextlib.ExitStack() as stack:
        if args.store == "postgres":
            from bench.services import postgres_schema

            schema_env = stack.enter_context(postgres_schema(f"profile_{uuid.uuid4().hex[:8]}", "test"))
            os.environ.update({**schema_env, "DJANGO_SETTINGS_MODULE": "bench.http_settings"})
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        return _profile(args)


def _profile(args: argparse.Namespace) -> int:
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    client = Client()
    post = {"content_type": "application/json", "data": b""}
    try:
        for _ in range(200):  # warm-up: imports, connections, first queries
            client.post("/fn/noop", **post)
            client.post("/bench/reference", **post)
        print(f"In-process, {args.requests} requests each (µs per request):")
        for label, call in (
            ("GET /healthz (bare JSON view)", lambda: client.get("/healthz")),
            ("POST /bench/reference (1 INSERT + 1 publish)", lambda: client.post("/bench/reference", **post)),
            ("POST /fn/noop (202)", lambda: client.post("/fn/noop", **post)),
        ):
            started = time.perf_counter()
            for _ in range(args.requests):
                call()
            print(f"  {label:<48} {(time.perf_counter() - started) / args.requests * 1e6:8.0f}")
        print(f"\nWhat a group commit could save: {args.requests} invocation-row INSERTs (µs per row)")
        alone, grouped = _commit_cost(args.requests)
        print(f"  {'one commit per row (autocommit)':<48} {alone:8.0f}")
        print(f"  {'all rows in one commit':<48} {grouped:8.0f}")
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests):
            client.post("/fn/noop", **post)
        profile.disable()
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        rows = [
            (cumulative / args.requests * 1e6, calls / args.requests, f"{Path(file).name}:{line} {name}")
            for (file, line, name), (calls, _, _, cumulative, _) in stats.items()
            if "/pygigo/" in file
        ]
        print(
            f"\nPOST /fn/noop under cProfile (inflates every time; compare rows), top {args.top} by cumulative:"
        )
        print(f"  {'µs/request':>10} {'calls':>6}  function")
        for micros, calls, where in sorted(rows, reverse=True)[: args.top]:
            print(f"  {micros:10.0f} {calls:6.1f}  {where}")
    finally:
        client_ = redis.Redis.from_url(args.broker_url)
        keys = list(client_.scan_iter(match=f"*{args.queue}*"))
        if keys:
            client_.delete(*keys)
    return 0


def _commit_cost(rows: int) -> tuple[float, float]:
    """µs per invocation-sized INSERT, each committed alone and all in one transaction."""
    from django.db import transaction

    from bench.http_urls import ENVELOPE
    from pygigo.django_site.models import Invocation

    def insert() -> None:
        Invocation.objects.create(
            id=uuid.uuid4(), function="noop", queue="q", envelope=ENVELOPE, relayed=True
        )

    started = time.perf_counter()
    for _ in range(rows):
        insert()
    alone = time.perf_counter() - started
    started = time.perf_counter()
    with transaction.atomic():
        for _ in range(rows):
            insert()
    grouped = time.perf_counter() - started
    return alone / rows * 1e6, grouped / rows * 1e6


if __name__ == "__main__":
    sys.exit(main())

"""db:// with real worker processes (`pygigo worker`), on SQLite and PostgreSQL: exactly-once
under concurrency, delays that survive a restart, how fast an idle worker wakes up, and acks
that survive the workers' database connections being terminated."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections, transaction

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import runtime
from tests.adapters import db_functions
from tests.conftest import migrate_database, wait_until

pytestmark = pytest.mark.slow

DATABASES = {"sqlite": "default", "postgres": "postgres"}


@pytest.fixture(params=list(DATABASES))
def alias(request: pytest.FixtureRequest) -> str:
    migrate_database(DATABASES[request.param])
    return DATABASES[request.param]


@pytest.fixture
def broker(alias: str) -> Iterator[PygigoBroker]:
    built = build_broker(f"db://{alias}", middleware=runtime.build_middleware())
    runtime.set_broker(built)
    built.flush(db_functions.QUEUE)
    yield built
    try:
        built.flush(db_functions.QUEUE)
    finally:
        runtime.reset()


@contextlib.contextmanager
def workers(
    url: str,
    log: Path,
    *,
    processes: int = 1,
    threads: int = 2,
    module: str = "tests.adapters.db_functions",
    **env_vars: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """`pygigo worker` serving ``module`` (with ``env_vars`` in its environment); stopped
    gracefully (SIGTERM) on exit."""
    env = dict(os.environ, PYGIGO_BROKER_URL=url, **env_vars)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pygigo", "worker", module]
    command += ["-p", str(processes), "-t", str(threads)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    except BaseException:
        # The worker's log is the only account of what it did: show it with the failure.
        print(f"--- {log} ---\n{log.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def warm_up(directory: Path, n: int = -1) -> None:
    """Send one message and wait until a worker ran it: the workers are up and idle."""
    db_functions.mark.send(str(directory), n)
    wait_until(
        lambda: any(c[0] == n for c in db_functions.read_calls(str(directory))), 60, "the warm-up call"
    )


def test_two_processes_run_2000_messages_exactly_once(
    broker: PygigoBroker, alias: str, tmp_path: Path
) -> None:
    count = 2000
    log = tmp_path / "worker.log"
    with workers(f"db://{alias}", log, processes=2, threads=8) as process:
        warm_up(tmp_path)
        # One transaction: all 2,000 become visible to both processes at the same instant.
        with transaction.atomic(using=alias):
            for n in range(count):
                db_functions.mark.send(str(tmp_path), n)
        committed = time.time()
        wait_until(lambda: len(db_functions.read_calls(str(tmp_path))) >= count + 1, 120, "2,000 calls")
        broker.join(db_functions.QUEUE, timeout=30_000)  # every row acked and pruned
        process.terminate()
        assert process.wait(timeout=60) == 0
    calls = [c for c in db_functions.read_calls(str(tmp_path)) if c[0] >= 0]
    runs = Counter(n for n, _ in calls)
    assert sorted(runs) == list(range(count)), "every message ran"
    assert max(runs.values()) == 1, f"ran twice: {[n for n, k in runs.items() if k > 1][:10]}"
    output = log.read_text(errors="replace")
    assert "database is locked" not in output
    assert "Traceback" not in output, output[-3000:]
    assert broker.model.objects.using(alias).filter(queue_name=db_functions.QUEUE).count() == 0
    drained = max(started for _, started in calls) - committed
    print(
        f"\n{alias}: {count} messages drained by 2x8 workers in {drained:.2f}s = {count / drained:.0f} msg/s"
    )


def test_delayed_message_survives_a_worker_killed_before_it_is_due(
    broker: PygigoBroker, alias: str, tmp_path: Path
) -> None:
    url = f"db://{alias}"
    with workers(url, tmp_path / "first.log") as first:
        warm_up(tmp_path)
        sent = time.time()
        db_functions.mark.send_with_options(args=(str(tmp_path), 1), delay_s=4)
        os.killpg(first.pid, signal.SIGKILL)  # no graceful requeue: nothing in memory to lose
        first.wait()
    stats = broker.queue_stats(db_functions.QUEUE)
    assert (stats.ready, stats.delayed) == (0, 1)
    with workers(url, tmp_path / "second.log"):
        wait_until(lambda: len(db_functions.read_calls(str(tmp_path))) == 2, 30, "the delayed call")
    ((_, started),) = [c for c in db_functions.read_calls(str(tmp_path)) if c[0] == 1]
    assert started - sent >= 3.95, "ran before its time"


# Wake-up bounds from the issue. On PostgreSQL the poll interval is set far above the bound, so
# only the LISTEN/NOTIFY doorbell can meet it; SQLite (another process) relies on polling.
WAKE_UP = {"default": ("db://default", 1.0), "postgres": ("db://postgres?poll_interval_ms=5000", 0.2)}


def test_idle_worker_wakes_up_in_time(broker: PygigoBroker, alias: str, tmp_path: Path) -> None:
    url, bound_s = WAKE_UP[alias]
    latencies = []
    with workers(url, tmp_path / "worker.log"):
        warm_up(tmp_path)
        for n in range(5):
            # Land at different points of the poll cycle; the measurement itself uses the
            # send and start timestamps, not this pause.
            time.sleep(0.35 + 0.2 * n)
            sent = time.time()
            db_functions.mark.send(str(tmp_path), n)
            wait_until(
                lambda n=n: any(c[0] == n for c in db_functions.read_calls(str(tmp_path))), 10, "the call"
            )
            ((_, started),) = [c for c in db_functions.read_calls(str(tmp_path)) if c[0] == n]
            latencies.append(started - sent)
    print(f"\n{alias}: wake-up latencies (ms): {[round(x * 1000) for x in latencies]}")
    assert max(latencies) < bound_s, latencies


APP = f"pygigo_w{os.environ['PYGIGO_TEST_RUN']}"


def terminate_worker_backends() -> int:
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [APP]
        )
        return int(cursor.fetchone()[0])


def test_no_row_stays_claimed_after_the_workers_backends_are_terminated(
    broker: PygigoBroker, alias: str, tmp_path: Path
) -> None:
    """The workers' connections are terminated mid-drain (``pg_terminate_backend``, as a
    failover or an administrator would). Dramatiq restarts the consumers; outcomes posted
    meanwhile must still be written, so no row stays claimed."""
    if alias != "postgres":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    count = 800
    rows = broker.rows().filter(queue_name=db_functions.QUEUE)  # type: ignore[attr-defined]
    # The application name lets the test terminate its workers' backends and no one else's.
    with workers("db://postgres", tmp_path / "worker.log", threads=8, PYGIGO_TEST_PG_APP=APP):
        warm_up(tmp_path)
        with transaction.atomic(using="postgres"):
            for n in range(count):
                db_functions.mark_slowly.send(str(tmp_path), n)
        terminated = 0
        for fraction in (0.2, 0.35, 0.5, 0.65):
            wait_until(
                lambda f=fraction: len(db_functions.read_calls(str(tmp_path))) >= f * count, 120, "the drain"
            )
            terminated += terminate_worker_backends()
        wait_until(lambda: {n for n, _ in db_functions.read_calls(str(tmp_path))} >= set(range(count)), 120)
        drained = time.monotonic()
        # Well within the 60 s lease: only acks that were written can have removed the rows.
        wait_until(lambda: not rows.exists(), 30, "every row to be acked")
        settled_s = time.monotonic() - drained
    runs = Counter(n for n, _ in db_functions.read_calls(str(tmp_path)) if n >= 0)
    assert terminated >= 4
    twice = sum(1 for k in runs.values() if k > 1)
    print(
        f"\n{count} messages, {terminated} backends terminated, {twice} ran twice, acked {settled_s:.1f}s after"
    )

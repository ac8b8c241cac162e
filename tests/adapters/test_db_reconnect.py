"""db:// on PostgreSQL: the workers' database connections are terminated mid-drain
(``pg_terminate_backend``, as a failover or an administrator would). Dramatiq restarts the
consumers; outcomes posted meanwhile must still be written, so no row stays claimed."""

from __future__ import annotations

import os
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

from .test_db_workers import warm_up, workers

pytestmark = pytest.mark.slow

APP = f"pygigo_w{os.environ['PYGIGO_TEST_RUN']}"


@pytest.fixture
def broker() -> Iterator[PygigoBroker]:
    migrate_database("postgres")
    built = build_broker("db://postgres", middleware=runtime.build_middleware())
    runtime.set_broker(built)
    built.flush(db_functions.QUEUE)
    yield built
    try:
        built.flush(db_functions.QUEUE)
    finally:
        runtime.reset()


def terminate_worker_backends() -> int:
    with connections["postgres"].cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", [APP]
        )
        return int(cursor.fetchone()[0])


def test_no_row_stays_claimed_after_the_workers_backends_are_terminated(
    broker: PygigoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 800
    monkeypatch.setenv("PYGIGO_TEST_PG_APP", APP)  # inherited by the worker processes only
    rows = broker.rows().filter(queue_name=db_functions.QUEUE)  # type: ignore[attr-defined]
    with workers("db://postgres", tmp_path / "worker.log", processes=1, threads=8):
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

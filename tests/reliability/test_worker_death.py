"""Nothing accepted is lost when workers die, on db:// (SQLite), Redis and RabbitMQ: tracked
invocations whose worker is SIGKILLed mid-run are taken over and finish; a function that
kills its worker every time is dead-lettered after its retries. Real brokers, real `pygigo
worker` processes, requests through the HTTP API."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from django.test import Client

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site.models import Invocation, Status
from pygigo.platform.poison import WORKER_DIED
from tests.conftest import wait_until

from . import functions
from .conftest import FAMILIES, worker

pytestmark = pytest.mark.slow


def post(name: str, job: dict[str, str]) -> str:
    response = Client().post(f"/fn/{name}", data=json.dumps(job), content_type="application/json")
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def test_invocations_whose_worker_is_killed_mid_run_all_succeed(
    family: str, broker: PygigoBroker, tmp_path: Path
) -> None:
    url, count = FAMILIES[family], 24
    ids = [post(functions.work.name, {"dir": str(tmp_path), "key": str(n)}) for n in range(count)]
    rows = Invocation.objects.filter(id__in=ids)
    with worker(url, tmp_path / "first.log") as first:
        wait_until(lambda: rows.filter(status=Status.RUNNING).count() >= 3, 60, "bodies to be running")
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.wait()
    orphans = {row.hex for row in rows.filter(status=Status.RUNNING).values_list("id", flat=True)}
    assert orphans, "the kill fell while invocations were running"
    with worker(url, tmp_path / "second.log"):
        wait_until(lambda: rows.filter(status=Status.SUCCEEDED).count() == count, 120, "every invocation")
        recovery_s = time.monotonic() - killed
    assert set(rows.values_list("status", flat=True)) == {Status.SUCCEEDED}
    keys = {row.id.hex: json.loads(row.result["body"])["key"] for row in rows}
    done = Counter(functions.read_events(str(tmp_path), "done"))
    started = Counter(functions.read_events(str(tmp_path), "start"))
    assert sorted(done, key=int) == [str(n) for n in range(count)]
    twice = sorted(key for key, n in done.items() if n > 1)
    # A body completes twice only when the kill fell between its return and the status write.
    assert set(twice) <= {keys[i] for i in orphans}
    assert max(started.values()) <= 2
    taken_over = rows.filter(attempts=2).count()
    assert taken_over >= len(orphans)
    print(
        f"\n{family}: {count} invocations, {len(orphans)} running at the kill, {taken_over} taken "
        f"over, {len(twice)} completed twice, all succeeded {recovery_s:.1f}s after the kill"
    )


def test_a_function_that_kills_its_worker_is_dead_lettered_after_its_retries(
    family: str, broker: PygigoBroker, tmp_path: Path
) -> None:
    url = FAMILIES[family]
    log = tmp_path / "worker.log"
    invocation_id = post(functions.suicide.name, {"dir": str(tmp_path)})
    with worker(url, log):
        wait_until(lambda: Invocation.objects.get(id=invocation_id).finished, 120, "the invocation to end")
        wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1, 30, "the dead letter")
    row = Invocation.objects.get(id=invocation_id)
    assert (row.status, row.error, row.attempts) == (Status.DEAD, WORKER_DIED, 2)  # max_retries=1
    assert functions.read_events(str(tmp_path), "start") == ["suicide", "suicide"]
    text = log.read_text(errors="replace")
    assert text.count("pygigo worker: worker process 0") >= 2  # died, restarted (with back-off)
    assert "died (exit code 1); restarting it in 1.0s" in text


@pytest.mark.parametrize("family", ["db"])  # the broker that counts deliveries
def test_a_plain_message_that_kills_its_worker_is_dead_lettered(
    family: str, broker: PygigoBroker, tmp_path: Path
) -> None:
    functions.suicide_plain.send(str(tmp_path))
    rows = broker.rows().filter(queue_name=functions.QUEUE)  # type: ignore[attr-defined]
    with worker(FAMILIES[family], tmp_path / "worker.log"):
        wait_until(lambda: rows.filter(state="dead").exists(), 120, "the dead letter")
    (dead,) = rows
    assert WORKER_DIED in dead.error and dead.deliveries == 3
    assert functions.read_events(str(tmp_path), "start") == ["plain", "plain"]  # max_retries=1

"""/healthz and /readyz, the worker heartbeat going stale when consumers stop fetching, and
`pygigo status` / `manage.py pygigo_status` (table, JSON, exit codes)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from django.core.management import call_command
from django.test import Client

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.django_site import outbox
from pygigo.platform import liveness, runtime
from tests.conftest import free_port, wait_until

from . import functions


@pytest.fixture(autouse=True)
def heartbeat_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A heartbeat directory of this test; heartbeats go stale after 0.5 s."""
    directory = tmp_path / "heartbeats"
    monkeypatch.setenv("PYGIGO_HEARTBEAT_DIR", str(directory))
    monkeypatch.setenv("PYGIGO_HEARTBEAT_STALE_S", "0.5")
    return directory


def status(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("pygigo_status", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_healthz_answers_without_io() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ready_with_database_migrations_and_broker(broker: PygigoBroker) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": {"ok": True}, "migrations": {"ok": True}, "broker": {"ok": True}},
    }


def test_readyz_answers_503_naming_the_unreachable_broker() -> None:
    port = free_port()
    runtime.set_broker(build_broker(f"redis://127.0.0.1:{port}/0"))
    try:
        response = Client().get("/readyz")
    finally:
        runtime.reset()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["database"] == {"ok": True}
    assert not body["checks"]["broker"]["ok"] and f"127.0.0.1:{port}" in body["checks"]["broker"]["detail"]


def test_heartbeat_goes_stale_while_consumers_stop_fetching_and_status_says_so(broker: PygigoBroker) -> None:
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        wait_until(lambda: any(not w["stale"] for w in liveness.read_heartbeats()), what="a fresh heartbeat")
        code, text = status("--workers-only")
        assert code == 0, text
        assert f"{os.getpid()}" in text and "ok" in text

        worker.pause()  # consumer threads stop fetching; the process lives on
        wait_until(
            lambda: all(w["stale"] for w in liveness.read_heartbeats()), what="the heartbeat to go stale"
        )
        code, text = status("--workers-only")
        assert code == 1
        assert "UNHEALTHY" in text and "no fetch for" in text and "STALE" in text

        worker.resume()
        wait_until(lambda: all(not w["stale"] for w in liveness.read_heartbeats()), what="the heartbeat back")
    finally:
        worker.stop(timeout=10_000)
    assert list(liveness.read_heartbeats()) == []  # a clean stop removes the file


def test_status_reports_queues_with_oldest_age_as_table_and_json(broker: PygigoBroker) -> None:
    functions.obs_waits.send()
    functions.obs_waits.send()
    wait_until(lambda: (broker.queue_stats(functions.IDLE_QUEUE).oldest_ready_age_s or 0) > 0.05)

    code, text = status()
    assert code == 0, text
    assert "Pygigo status: healthy" in text
    assert "QUEUE" in text and "OLDEST READY" in text
    (line,) = [line for line in text.splitlines() if line.startswith(functions.IDLE_QUEUE + " ")]
    assert line.split()[1:4] == ["2", "0", "0"]
    # Other tests of the session may leave invocations in the outbox: the count is the table's.
    assert f"Outbox backlog: {outbox.pending()}" in text and "Scheduler leader: none" in text

    code, raw = status("--json")
    report = json.loads(raw)
    (row,) = [row for row in report["queues"] if row["queue"] == functions.IDLE_QUEUE]
    assert (row["ready"], row["delayed"], row["dead"]) == (2, 0, 0) and row["oldest_ready_age_s"] > 0
    assert report["healthy"] is True and report["outbox_backlog"] == outbox.pending()

    code, text = status("--max-age", "0.01")
    assert code == 1 and f"queue {functions.IDLE_QUEUE}: oldest ready message waits" in text


def test_pygigo_status_command_exits_1_when_the_broker_is_unreachable(heartbeat_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYGIGO_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    result = subprocess.run(
        [sys.executable, "-m", "pygigo", "status", "tests.observability.functions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "UNHEALTHY" in result.stdout and f"127.0.0.1:{port}" in result.stdout

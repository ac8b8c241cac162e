"""`pygigo worker` and `manage.py pygigo_worker`: fail fast with a fix, serve chosen queues."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pygigo.adapters.base import build_broker
from pygigo.platform import runtime
from tests import cli_functions
from tests.conftest import free_port, require_service, wait_until


def run_pygigo(*args: str, url: str = "memory://") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYGIGO_BROKER_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "pygigo", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_missing_module_is_named() -> None:
    result = run_pygigo("worker", "no_such_module_here")
    assert result.returncode == 2
    assert "Cannot import functions module 'no_such_module_here'" in result.stderr


def test_unreachable_broker_fails_before_forking() -> None:
    port = free_port()
    result = run_pygigo("worker", "tests.cli_functions", url=f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Dramatiq" not in result.stderr  # failed before any worker process booted


def test_unknown_queue_lists_the_known_ones() -> None:
    result = run_pygigo("worker", "tests.cli_functions", "--queues", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr and f"math-{cli_functions.RUN}" in result.stderr


def test_unknown_scheme_fails_with_known_schemes() -> None:
    result = run_pygigo("worker", "tests.cli_functions", url="kafka://x")
    assert result.returncode == 2
    assert "Known schemes" in result.stderr


def test_manage_py_command_reports_configuration_errors() -> None:
    with pytest.raises(CommandError, match="no_such_module_here"):
        call_command("pygigo_worker", "no_such_module_here")


@pytest.mark.slow
def test_worker_serves_only_the_queues_asked_for(tmp_path: Path) -> None:
    require_service("redis")
    url = f"redis://127.0.0.1:6379/15?namespace=cli{cli_functions.RUN}"
    broker = build_broker(url, middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    env = {**os.environ, "PYGIGO_BROKER_URL": url}
    command = [sys.executable, "-m", "pygigo", "worker", "tests.cli_functions", "-p", "2", "-t", "8"]
    worker = subprocess.Popen(
        [*command, "--queues", f"math-{cli_functions.RUN}"], env=env, start_new_session=True
    )
    try:
        cli_functions.report.send(str(tmp_path))
        cli_functions.add.send(1, 2, str(tmp_path))
        wait_until(lambda: (tmp_path / "add-3").exists(), what="add(1, 2) to run on the worker")
        assert not (tmp_path / "report").exists()
        assert broker.queue_stats(f"reports-{cli_functions.RUN}").ready == 1
    finally:
        worker.terminate()
        try:
            assert worker.wait(timeout=30) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            keys = list(broker.client.scan_iter(f"{broker.namespace}:*"))  # type: ignore[attr-defined]
            if keys:
                broker.client.delete(*keys)  # type: ignore[attr-defined]
            runtime.reset()


def test_a_fresh_machine_is_told_to_migrate_then_every_process_shares_one_database(tmp_path: Path) -> None:
    """No DJANGO_SETTINGS_MODULE, a data folder that does not exist yet: `pygigo schedules`
    says what to run (it used to end in a traceback), `pygigo migrate` creates it, and a plain
    `python -c` producer on db:// configures Django itself and writes to that same database."""
    home = tmp_path / "home"
    env = {**os.environ, "PYGIGO_HOME": str(home), "PYGIGO_BROKER_URL": "db://", "PYTHONPATH": os.getcwd()}
    for name in ("DJANGO_SETTINGS_MODULE", "PYGIGO_SQLITE_PATH"):
        env.pop(name, None)

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    before = run(sys.executable, "-m", "pygigo", "schedules", "tests.cli_functions")
    assert before.returncode == 2
    assert before.stderr.count("\n") == 1 and "`pygigo migrate` (or `manage.py migrate`)" in before.stderr
    assert run(sys.executable, "-m", "pygigo", "migrate").returncode == 0
    assert (home / "pygigo.sqlite3").exists()
    after = run(sys.executable, "-m", "pygigo", "schedules", "tests.cli_functions")
    assert after.returncode == 0 and "pygigo.maintenance.requeue_expired_leases" in after.stdout
    producer = run(
        sys.executable, "-c", f"from tests.cli_functions import report; report.send({str(tmp_path)!r})"
    )
    assert producer.returncode == 0, producer.stderr
    with sqlite3.connect(home / "pygigo.sqlite3") as db:
        (queued,) = db.execute("SELECT count(*) FROM pygigo_db_message").fetchone()
    assert queued == 1

"""`make dev` (`pygigo dev`): one command, no external service; Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_until

REPO = Path(__file__).resolve().parents[1]


def processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries ``marker`` (every process the stack started inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
    return found


@pytest.mark.slow
def test_dev_stack_serves_the_example_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    marker = f"pygigo-dev-test-{port}-{os.getpid()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pygigo.default_site.settings",
        "PYGIGO_SQLITE_PATH": str(tmp_path / "dev.sqlite3"),
        "PYTHONPATH": str(REPO),
        "PYGIGO_DEV_MARKER": marker,  # lets us find every process of this stack
        "PYGIGO_METRICS": json.dumps({"enabled": True, "port": None, "token": "dev-test-token"}),
    }
    env.pop("PYGIGO_BROKER_URL", None)
    env.pop("PYGIGO_FUNCTIONS", None)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "pygigo", "dev", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(
            lambda: "Ctrl-C stops everything" in log.read_text(), timeout=60, what="the stack to start"
        )
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/" in text and "login admin / " in text and "curl -s -X POST" in text

        def call() -> bool:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/fn/add",
                data=b"[1, 2]",
                headers={"Content-Type": "application/json", "Prefer": "wait=10"},
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as response:
                    return bool(json.loads(response.read()) == {"result": 3})
            except OSError:
                return False  # web server not listening yet

        wait_until(call, timeout=60, what="add(1, 2) to come back through web, db:// broker and worker")
        # The web process's /metrics sums the stack's processes: the worker ran add (its
        # tallies reach the shared directory within a second).
        scrape = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer dev-test-token"}
        )

        def scraped_add() -> bool:
            with urllib.request.urlopen(scrape, timeout=15) as response:
                exposition = response.read().decode()
            return 'pygigo_messages_succeeded_total{function="add",queue="math"} 1.0' in exposition

        wait_until(scraped_add, timeout=10, what="the worker's run of add in the web's /metrics")
        assert len(processes_with(marker)) >= 4  # dev, web, worker main + child, scheduler
    finally:
        stack.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert stack.wait(timeout=60) == 0
    log_text = log.read_text()
    for name in ("web", "worker", "scheduler"):
        assert f"pygigo dev: {name} stopped" in log_text
    assert processes_with(marker) == []
    assert "Killing worker process" not in log_text  # workers stopped gracefully

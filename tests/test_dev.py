"""`make dev` (`pygigo dev`): one command, no external service; Ctrl-C leaves nothing running."""

from __future__ import annotations

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
def test_dev_stack_serves_private_functions_with_the_curl_line_it_prints_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    port = free_port()
    marker = f"pygigo-dev-test-{port}-{os.getpid()}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pygigo.default_site.settings",
        "PYGIGO_SQLITE_PATH": str(tmp_path / "dev.sqlite3"),
        "PYTHONPATH": str(REPO),
        "PYGIGO_DEV_MARKER": marker,  # lets us find every process of this stack
    }
    env.pop("PYGIGO_BROKER_URL", None)
    env.pop("PYGIGO_FUNCTIONS", None)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "pygigo", "dev", "tests.dev_functions", "--port", str(port)],
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
        assert f"http://127.0.0.1:{port}/" in text and "login admin / " in text
        # The function is private: the line works because it carries the development API key.
        (curl,) = [line.split("try:", 1)[1].strip() for line in text.splitlines() if "try:" in line]
        assert curl.startswith(
            f"curl -s -X POST http://127.0.0.1:{port}/fn/multiply -H 'Authorization: Bearer pgk_"
        )

        def call() -> bool:
            answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
            return answer.stdout == '{"result": 2}'

        wait_until(call, timeout=60, what="the printed curl line to answer through web, db:// and worker")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=15) as landing:
            page = landing.read().decode()
        assert "POST /fn/multiply" in page and 'href="/admin/pygigo/invocation/queues/"' in page
        assert len(processes_with(marker)) >= 4  # dev, web, worker main + child, scheduler
    finally:
        stack.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert stack.wait(timeout=60) == 0
    log_text = log.read_text()
    for name in ("web", "worker", "scheduler"):
        assert f"pygigo dev: {name} stopped" in log_text
    assert processes_with(marker) == []
    assert "Killing worker process" not in log_text  # workers stopped gracefully

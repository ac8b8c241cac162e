"""`make dev` (`pygigo dev`): one command, no external service; Ctrl-C leaves nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
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


def interrupt(stack: subprocess.Popen[bytes], marker: str) -> int:
    """Ctrl-C the stack and wait for it; if it hangs, kill whatever it left (so a failing test
    leaves no server, worker or scheduler behind) and fail."""
    stack.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        return stack.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for pid in [stack.pid, *processes_with(marker)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stack.wait()
        raise


def add_over_http(port: int) -> bool:
    """add(1, 2) through web, db:// broker and worker; False while something is not up."""
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


def dev_env(tmp_path: Path, marker: str) -> dict[str, str]:
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
    return env


@pytest.mark.slow
def test_dev_stack_serves_private_functions_with_the_curl_line_it_prints_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    port = free_port()
    marker = f"pygigo-dev-test-{port}-{os.getpid()}"
    env = dev_env(tmp_path, marker)
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
        assert stat.S_IMODE((tmp_path / "dev.sqlite3").stat().st_mode) == 0o600
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
        # The web process's /metrics sums the stack's processes: the worker ran multiply (its
        # tallies reach the shared directory within a second).
        scrape = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer dev-test-token"}
        )

        def scraped_runs() -> bool:
            with urllib.request.urlopen(scrape, timeout=15) as response:
                exposition = response.read().decode()
            return 'pygigo_messages_succeeded_total{function="multiply",queue="dev-math"}' in exposition

        wait_until(scraped_runs, timeout=10, what="the worker's run of multiply in the web's /metrics")
        assert len(processes_with(marker)) >= 4  # dev, web, worker main + child, scheduler
    finally:
        assert interrupt(stack, marker) == 0
    log_text = log.read_text()
    for name in ("web", "worker", "scheduler"):
        assert f"pygigo dev: {name} stopped" in log_text
    assert processes_with(marker) == []
    assert "Killing worker process" not in log_text  # workers stopped gracefully


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_web_server_stays_up(tmp_path: Path) -> None:
    port = free_port()
    marker = f"pygigo-dev-test-{port}-{os.getpid()}"
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "pygigo", "dev", "--port", str(port)],
            cwd=REPO,
            env=dev_env(tmp_path, marker),
            stdout=out,
            stderr=out,
        )
    try:
        wait_until(lambda: add_over_http(port), timeout=60, what="the stack to serve add(1, 2)")
        (worker,) = [  # the worker service's leader (its children share its command line)
            pid
            for pid in processes_with(marker)
            if (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[2:4] == [b"pygigo", b"worker"]
            and os.getpgid(pid) == pid
        ]
        os.killpg(worker, signal.SIGKILL)  # the worker service's whole process group
        wait_until(lambda: "worker exited" in log.read_text(), timeout=30, what="the stack to notice")
        assert stack.poll() is None
        wait_until(lambda: add_over_http(port), timeout=60, what="a restarted worker to serve add(1, 2)")
    finally:
        assert interrupt(stack, marker) == 0
    assert "pygigo dev: worker exited (-9); restarting it in" in log.read_text()
    assert processes_with(marker) == []

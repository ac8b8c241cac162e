"""`pygigo worker`'s supervisor, on real child processes: a stop signal reaches every child,
including one being (re)started at that moment, and a child waiting for its restart is not
started after the stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
DIES = [sys.executable, "-c", "raise SystemExit(3)"]


def run_supervisor(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (which calls ``supervise``) in a fresh interpreter; it must stop on its own."""
    script = tmp_path / "supervise.py"
    script.write_text(
        "import os, signal, sys\n"
        "from pygigo.platform import supervisor\n"
        f"SLEEPER = {SLEEPER!r}\nDIES = {DIES!r}\n" + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )


def test_sigterm_reaches_a_child_started_while_the_signal_arrives(tmp_path: Path) -> None:
    # The signal lands inside the child's start, before its process is known: the old handler
    # forwarded it to nobody, and the supervisor then waited for that child forever.
    result = run_supervisor(
        tmp_path,
        """
        original = supervisor._Child.start
        def start(self):
            os.kill(os.getpid(), signal.SIGTERM)
            original(self)
        supervisor._Child.start = start
        sys.exit(supervisor.supervise(SLEEPER, 1, poll_s=0.05))
        """,
    )
    assert result.returncode == signal.SIGTERM, result.stderr


def test_a_child_waiting_to_restart_is_not_started_after_a_stop(tmp_path: Path) -> None:
    result = run_supervisor(
        tmp_path,
        """
        import logging
        class StopWhenBothDied(logging.Handler):
            died = 0
            def emit(self, record):
                print(record.getMessage(), file=sys.stderr)
                self.died += " died " in record.getMessage()
                if self.died == 2:  # both now wait for their restart
                    os.kill(os.getpid(), signal.SIGTERM)
        supervisor.logger.addHandler(StopWhenBothDied())
        sys.exit(supervisor.supervise(DIES, 2, poll_s=0.05))
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("died (exit code 3); restarting it in 1.0s") == 2
    assert "restarting worker process" not in result.stderr


#: A Dramatiq main as the start-up race leaves it: its worker process exited, never reaped, and
#: the main deaf to SIGTERM (Dramatiq blocks stop signals until start-up completes).
HUNG_MAIN = [
    sys.executable,
    "-c",
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "subprocess.Popen([sys.executable, '-c', 'pass']); time.sleep(120)",
]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="the hang is detected through Linux's /proc")
def test_a_main_hung_on_its_dead_worker_process_is_killed_and_restarted(tmp_path: Path) -> None:
    result = run_supervisor(
        tmp_path,
        f"""
        import logging
        supervisor.HUNG_AFTER_S = 0.5
        class StopAtTheSecondHang(logging.Handler):
            hangs = 0
            def emit(self, record):
                print(record.getMessage(), file=sys.stderr)
                self.hangs += " is hung" in record.getMessage()
                if self.hangs == 2:
                    os.kill(os.getpid(), signal.SIGTERM)
        supervisor.logger.addHandler(StopAtTheSecondHang())
        sys.exit(supervisor.supervise({HUNG_MAIN!r}, 1, poll_s=0.05))
        """,
    )
    # Killed and restarted; hung again and killed as the stop arrives: the supervisor ends.
    assert result.stderr.count("is hung: its Dramatiq worker process died and was never reaped") == 2
    assert result.stderr.count("died (killed by SIGKILL); restarting it in 1.0s") == 1
    assert result.stderr.count("restarting worker process 0") == 1
    assert result.returncode == signal.SIGKILL, result.stderr

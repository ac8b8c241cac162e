"""``pygigo worker``'s supervisor: one Dramatiq process group per worker process, restarted
when it dies.

Dramatiq's own main process stops every worker when one dies and restarts nothing. Here each
worker process runs under a Dramatiq main of its own (``--processes 1``), and the supervisor
starts a new one when it exits unexpectedly (SIGKILL, out of memory, a function calling
``os._exit``), after a back-off that doubles from ``RESTART_DELAY_S`` to ``MAX_RESTART_DELAY_S``
and resets once a process has stayed up ``HEALTHY_AFTER_S``. Every restart is logged.

A Dramatiq main can hang for good after its worker process dies: killed while it held the lock
of the start-up event the main waits on (a function that kills its process at once can do
that), the main blocks forever with its stop signals still blocked. The supervisor watches the
main's children in ``/proc`` (Linux) and kills a main whose worker process has been dead and
unreaped for ``HUNG_AFTER_S``; it is then restarted like any other death.

Signals: SIGTERM and SIGHUP are forwarded once to every child (graceful stop; reload). SIGINT
(Ctrl-C) reaches the whole process group from the terminal, children included, so it is not
forwarded again: a second signal would make Dramatiq skip its graceful stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("pygigo.worker")

RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
HEALTHY_AFTER_S = 60.0
#: A Dramatiq main reaps a dead worker process within about a second (it polls them): one
#: that has not after this long is hung.
HUNG_AFTER_S = 10.0


@dataclass
class _Child:
    index: int
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay_s: float = RESTART_DELAY_S
    restart_at: float | None = field(default=None)

    orphaned_since: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)
        self.started = time.monotonic()
        self.restart_at = None
        self.orphaned_since = None

    def hung(self, now: float) -> bool:
        """Whether this running Dramatiq main has had only dead worker processes for
        ``HUNG_AFTER_S`` (see module docstring)."""
        assert self.process is not None
        if not _children_all_exited(self.process.pid):
            self.orphaned_since = None
            return False
        if self.orphaned_since is None:
            self.orphaned_since = now
        return now - self.orphaned_since >= HUNG_AFTER_S


def _children_all_exited(pid: int) -> bool:
    """Whether ``pid`` has children and every one has exited (a zombie its parent has not
    reaped). False where ``/proc`` cannot tell (not Linux)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    if not children:
        return False  # not started yet, or reaped: the main is not stuck on them
    for child in children:
        with contextlib.suppress(OSError):  # reaped since: gone
            # The state follows the command name, which is in parentheses and may hold spaces.
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return False
    return True


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def supervise(argv: Sequence[str], processes: int, *, poll_s: float = 0.2) -> int:
    """Run ``processes`` copies of ``argv`` (a one-process Dramatiq command line) until a
    SIGTERM or SIGINT, restarting any that dies. Returns 0 after a clean stop."""
    if not logger.hasHandlers():
        logging.basicConfig(
            level=logging.INFO, format="[%(asctime)s] [PID %(process)d] [%(name)s] %(message)s"
        )
    children = [_Child(i, list(argv)) for i in range(processes)]
    stopping = False
    # The handler only records the signal; the loop forwards it. Forwarding from the handler
    # raced with a restart: a SIGTERM arriving while Popen ran missed the new child.
    received: list[int] = []

    def forward(signum: int) -> None:
        if signum == signal.SIGINT:
            return  # the terminal sent it to the children too
        for child in children:
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signum)

    for stop_or_reload in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_or_reload, lambda signum, frame: received.append(signum))
    for child in children:
        child.start()
    while True:
        while received:
            signum = received.pop(0)
            stopping = stopping or signum != signal.SIGHUP
            forward(signum)
        now = time.monotonic()
        for child in children:
            assert child.process is not None
            if child.restart_at is not None:
                if not stopping and now >= child.restart_at:
                    logger.warning("pygigo worker: restarting worker process %d", child.index)
                    child.start()
                continue
            code = child.process.poll()
            if code is None:
                if child.hung(now):
                    logger.error(
                        "pygigo worker: worker process %d (pid %d) is hung: its Dramatiq worker "
                        "process died and was never reaped; killing it",
                        child.index,
                        child.process.pid,
                    )
                    child.process.kill()
                continue
            if stopping:
                continue
            if now - child.started >= HEALTHY_AFTER_S:
                child.delay_s = RESTART_DELAY_S
            logger.error(
                "pygigo worker: worker process %d (pid %d) died (%s); restarting it in %.1fs",
                child.index,
                child.process.pid,
                _describe_exit(code),
                child.delay_s,
            )
            child.restart_at = now + child.delay_s
            child.delay_s = min(child.delay_s * 2, MAX_RESTART_DELAY_S)
        if stopping and all(c.process is None or c.process.poll() is not None for c in children):
            # The worst exit among the processes the stop found running (not those waiting
            # for a restart, whose death was already reported).
            ran = [c.process.returncode for c in children if c.process is not None and c.restart_at is None]
            return max((abs(code or 0) for code in ran), default=0)
        time.sleep(poll_s)


def dramatiq_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs Dramatiq's CLI with ``argv`` in a fresh interpreter."""
    return [sys.executable, "-m", "dramatiq", *argv]

"""Functions the db:// worker-subprocess tests run. Each call appends ``<n> <start time>`` to
a file per worker process under the directory it is given (O_APPEND lines are atomic), so the
test can count executions across processes and read when each one started."""

from __future__ import annotations

import os
import time

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"db-{RUN}"


@pygigo.function(queue=QUEUE, max_retries=0)
def mark(directory: str, n: int) -> None:
    started = time.time()
    line = f"{n} {started:.6f}\n".encode()
    fd = os.open(os.path.join(directory, f"calls-{os.getpid()}"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_calls(directory: str) -> list[tuple[int, float]]:
    """Every recorded call, from every worker process: (n, start time)."""
    calls = []
    for name in os.listdir(directory):
        if name.startswith("calls-"):
            with open(os.path.join(directory, name)) as handle:
                for line in handle:
                    n, started = line.split()
                    calls.append((int(n), float(started)))
    return calls


@pygigo.function(queue=QUEUE, max_retries=0)
def mark_slowly(directory: str, n: int) -> None:
    """``mark`` after 50 ms: keeps worker threads busy, so outcomes are in flight at any time."""
    time.sleep(0.05)
    mark.fn(directory, n)


@pygigo.function(queue=QUEUE, max_retries=0, sensitive=("password",))
def login(user: str, password: str) -> None:
    """Takes a sensitive argument (the dead-letter and admin tests never run it)."""

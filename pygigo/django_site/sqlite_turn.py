"""Taking turns for SQLite's write lock without SQLite's sleeps.

The accept's transaction holds SQLite's write lock across its publish (the row must stay
uncommitted until the broker has the message; see :func:`.store._send_before_commit`). Another
web process that wants the lock meanwhile gets ``SQLITE_BUSY``, and SQLite's busy handler then
sleeps 1 ms, 2 ms, 5 ms, ... however soon the lock is free: with two gunicorn workers accepting
at once, those sleeps cost a tenth to a quarter of the throughput (bench/README.md). So
accepting processes first take turns on an advisory lock (``flock``) on a file next to the
database (``<name>-pygigo-turn``), polled every 0.1 ms, and open their transaction only when it
is theirs.

Waiting is bounded by the database's busy timeout (``OPTIONS["timeout"]``); after it, the
transaction goes ahead and SQLite's own locking decides, as without turns. Other writers do
not take turns: a worker's start and outcome (:mod:`.transitions`) poll SQLite's lock itself in
steps as fine, and the rest (the outbox relay, the admin) wait in SQLite's busy handler. Nothing changes for other databases, in-memory SQLite, where ``fcntl`` is missing or
where the lock file cannot be created.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

#: Between two tries for a turn; SQLite's busy handler first sleeps ten times as long.
POLL_S = 0.0001
#: Python's sqlite3 default busy timeout, when the database's OPTIONS set none.
DEFAULT_TIMEOUT_S = 5.0

_files = threading.local()


@contextlib.contextmanager
def writer_turn(connection: Any) -> Iterator[None]:
    """This process's (and thread's) turn to write to ``connection``'s SQLite database."""
    lock = _lock_file(connection)
    if lock is None:
        yield
        return
    deadline = time.monotonic() + float(connection.settings_dict["OPTIONS"].get("timeout", DEFAULT_TIMEOUT_S))
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                break  # SQLite's own locking decides (and its busy timeout applies)
            time.sleep(POLL_S)
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)  # a no-op if the turn was never taken


def _lock_file(connection: Any) -> IO[bytes] | None:
    """This thread's open lock file for the connection's database (one per thread: a flock
    is held by an open file, and threads of one process must take turns too); None where
    there are no turns. The file closes with the thread."""
    if fcntl is None or connection.vendor != "sqlite" or connection.is_in_memory_db():
        return None
    path = f"{connection.settings_dict['NAME']}-pygigo-turn"
    files: dict[str, IO[bytes]] = _files.__dict__.setdefault("files", {})
    lock = files.get(path)
    if lock is None:
        try:
            lock = files[path] = open(path, "ab")  # noqa: SIM115 - kept open for the thread's life
        except OSError:  # a directory this process cannot write to: SQLite's locking decides
            return None
    return lock

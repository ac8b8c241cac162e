"""Accepting processes take turns for SQLite's write lock (pygigo.django_site.sqlite_turn)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections

from pygigo.django_site import sqlite_turn


class _Connection:
    """What writer_turn reads of a Django connection."""

    def __init__(self, name: str, vendor: str = "sqlite", timeout: float = 5.0) -> None:
        self.vendor = vendor
        self.settings_dict: dict[str, Any] = {"NAME": name, "OPTIONS": {"timeout": timeout}}

    def is_in_memory_db(self) -> bool:
        return self.settings_dict["NAME"] == ":memory:"


def _hold(connection: Any, held: threading.Event, release: threading.Event) -> threading.Thread:
    def run() -> None:
        with sqlite_turn.writer_turn(connection):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(10)
    return thread


def test_writers_take_turns(tmp_path: Any) -> None:
    connection = _Connection(str(tmp_path / "db.sqlite3"))
    held, release = threading.Event(), threading.Event()
    holder = _hold(connection, held, release)
    waited: list[float] = []
    asking = threading.Event()

    def wait_for_a_turn() -> None:
        started = time.monotonic()
        asking.set()
        with sqlite_turn.writer_turn(connection):
            waited.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait_for_a_turn)
    waiter.start()
    assert asking.wait(10)
    time.sleep(0.05)  # the turn stays taken this long
    assert waited == []  # another thread holds the turn
    release.set()
    holder.join(10)
    waiter.join(10)
    assert len(waited) == 1 and waited[0] >= 0.05


def test_a_turn_not_given_in_time_goes_ahead_anyway(tmp_path: Any) -> None:
    connection = _Connection(str(tmp_path / "db.sqlite3"), timeout=0.05)
    held, release = threading.Event(), threading.Event()
    holder = _hold(connection, held, release)
    try:
        started = time.monotonic()
        with sqlite_turn.writer_turn(connection):
            assert 0.05 <= time.monotonic() - started < 5  # SQLite's own locking decides now
    finally:
        release.set()
        holder.join(10)


@pytest.mark.parametrize(
    "connection",
    [_Connection(":memory:"), _Connection("db", vendor="postgresql"), _Connection("/no/such/dir/db.sqlite3")],
)
def test_no_turns_without_a_lock_file(connection: Any, tmp_path: Any) -> None:
    assert sqlite_turn._lock_file(connection) is None
    with sqlite_turn.writer_turn(connection):
        pass


def test_the_site_database_takes_turns() -> None:
    connection = connections["default"]
    lock = sqlite_turn._lock_file(connection)
    assert lock is not None and lock.name == f"{connection.settings_dict['NAME']}-pygigo-turn"

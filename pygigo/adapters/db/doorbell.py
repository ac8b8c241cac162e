"""Waking idle consumers: a doorbell, never the only way a message is found.

Consumers poll (``poll_interval_ms``), so a message is always found eventually; the doorbell
only makes it fast:

* in one process, ``LocalDoorbell`` wakes the consumers of a queue when a message for it is
  committed (any database);
* across processes on PostgreSQL, the sender runs ``pg_notify`` in the same transaction as its
  INSERT (so a rolled-back enqueue rings nothing), and each consumer has a :class:`Listener`
  thread that holds a ``LISTEN`` connection and wakes it;
* across processes on SQLite (a local file, so its processes share one machine), each consumer
  has a :class:`SocketListener` thread on a Unix datagram socket in a directory beside the
  database file, and the sender, once its INSERT committed, sends one byte to each socket of
  the queue (:class:`SocketDoorbell`).

A lost notification (listener reconnecting, ``notify=false``, a full socket buffer) costs at
most one poll interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("pygigo.adapters.db")

#: How often a listener checks whether it should stop (seconds).
_LISTEN_SLICE_S = 0.5


def channel_for(queue_name: str) -> str:
    """The NOTIFY channel of a queue: short and identifier-safe whatever the queue is called
    (PostgreSQL channel names are identifiers of at most 63 bytes)."""
    return "pygigo_" + hashlib.sha1(queue_name.encode()).hexdigest()[:24]


def can_notify(connection: BaseDatabaseWrapper) -> bool:
    """Whether this database has LISTEN/NOTIFY with a client we can listen with (psycopg 3)."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def ring(connection: BaseDatabaseWrapper, queue_name: str) -> None:
    """Send the doorbell of ``queue_name``. Transactional: inside a transaction it is delivered
    at commit, and dropped on rollback. No-op where NOTIFY does not exist."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [channel_for(queue_name)])


class LocalDoorbell:
    """Wakes the consumers of a queue in this process. Thread-safe."""

    def __init__(self) -> None:
        self._events: dict[str, set[threading.Event]] = defaultdict(set)
        self._lock = threading.Lock()

    def subscribe(self, queue_name: str, event: threading.Event) -> None:
        with self._lock:
            self._events[queue_name].add(event)

    def unsubscribe(self, queue_name: str, event: threading.Event) -> None:
        with self._lock:
            self._events[queue_name].discard(event)

    def ring(self, queue_name: str) -> None:
        with self._lock:
            events = list(self._events.get(queue_name, ()))
        for event in events:
            event.set()


class Listener(threading.Thread):
    """Holds a ``LISTEN`` connection (not Django's: a dedicated autocommit one) and sets
    ``event`` on every notification for ``queue_name``. Reconnects after errors; stop() returns
    within about half a second."""

    def __init__(self, alias: str, queue_name: str, event: threading.Event) -> None:
        super().__init__(name=f"pygigo-db-listen-{queue_name}", daemon=True)
        self.alias = alias
        self.channel = channel_for(queue_name)
        self.event = event
        self.listening = threading.Event()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._listen()
            except Exception as exc:
                self.listening.clear()
                logger.warning("LISTEN on %s failed (%s); polling until it reconnects.", self.channel, exc)
                # Anything may have been missed: let the consumer look.
                self.event.set()
                self._halt.wait(1.0)

    def _listen(self) -> None:
        from psycopg import sql

        wrapper = connections[self.alias]
        conn: Any = wrapper.get_new_connection(wrapper.get_connection_params())
        try:
            conn.autocommit = True
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.listening.set()
            while not self._halt.is_set():
                for _ in conn.notifies(timeout=_LISTEN_SLICE_S, stop_after=1):
                    self.event.set()
        finally:
            self.listening.clear()
            conn.close()


#: Longest path of a Unix socket (sun_path holds 108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 107


def socket_name(queue_name: str) -> str:
    return hashlib.sha1(queue_name.encode()).hexdigest()[:16]


def _socket_directory(database: str, suffix: str, longest_name: int) -> Path:
    """Where the sockets of an SQLite file live: beside it (``<file><suffix>``), like SQLite's
    own ``-wal`` and ``-shm`` files, which every process using the file must reach anyway (a
    container with its own temp dir included); in the temp dir when paths there would be too
    long for a socket."""
    path = os.path.realpath(database)
    beside = Path(path + suffix)
    if len(str(beside)) + 1 + longest_name <= _MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pygigo{suffix}-{os.getuid()}-{digest}"


class SocketDoorbell:
    """Rings the consumers of a queue in every process on this machine that uses the SQLite
    file ``database``: one datagram to each socket its :class:`SocketListener` bound."""

    def __init__(self, database: str) -> None:
        # Socket names: <queue hash (16)>.<listener id (8)>
        self.directory = _socket_directory(database, "-pygigo-bell", 25)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    @classmethod
    def for_connection(cls, connection: BaseDatabaseWrapper) -> SocketDoorbell | None:
        """The doorbell of a file-backed SQLite database; None for others (and in-memory ones)."""
        name = str(connection.settings_dict.get("NAME") or "")
        if connection.vendor != "sqlite" or not name or name == ":memory:" or "mode=memory" in name:
            return None
        return cls(name)

    def ring(self, queue_name: str) -> None:
        prefix = socket_name(queue_name) + "."
        try:
            names = os.listdir(self.directory)
        except OSError:  # no consumer has bound one yet
            return
        for name in names:
            if not name.startswith(prefix):
                continue
            path = self.directory / name
            try:
                self._sender.sendto(b"\0", str(path))
            except BlockingIOError:
                pass  # its buffer is full of rings it has not read yet: it will look anyway
            except (ConnectionRefusedError, FileNotFoundError):
                # Left behind by a process that died without closing it.
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError as exc:
                logger.debug("Doorbell %s did not ring: %s", path, exc)


class SocketListener(threading.Thread):
    """Sets ``event`` whenever a :class:`SocketDoorbell` rings ``queue_name``; stop() returns
    within about half a second and removes its socket."""

    def __init__(self, bell: SocketDoorbell, queue_name: str, event: threading.Event) -> None:
        super().__init__(name=f"pygigo-db-bell-{queue_name}", daemon=True)
        self.path = bell.directory / f"{socket_name(queue_name)}.{uuid.uuid4().hex[:8]}"
        self.event = event
        self.listening = threading.Event()
        self._halt = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Bound before start() returns, so a message committed after the consumer's first look
        # already rings it.
        bell.directory.mkdir(mode=0o700, exist_ok=True)
        self._sock.bind(str(self.path))
        self._sock.settimeout(_LISTEN_SLICE_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        self.listening.set()
        try:
            while not self._halt.is_set():
                try:
                    self._sock.recv(64)
                except TimeoutError:
                    continue
                self.event.set()
        finally:
            self.listening.clear()
            self._sock.close()
            with contextlib.suppress(OSError):
                self.path.unlink()

"""Completion notices: the process that finishes an invocation (a worker; a web process that
cancels one) tells the web process waiting for it (``Prefer: wait``, ``fn.invoke(wait=…)``), so
the waiter answers at once instead of polling the database.

A notice is only a hint to read the row now; the row stays the record. The waiter subscribes
before its first read of the row, so a finish after that read is always announced to it, and
while subscribed it still reads the row every ``PYGIGO_WAIT_FALLBACK_POLL_S`` (default 1 s): a
lost notice (the channel down, a publish that failed, a row changed by hand) delays an answer,
never loses it. Without a channel the waiter polls as before (:func:`.store.wait_for`).

``PYGIGO_COMPLETION_URL`` picks the channel:

* unset or ``auto``: ``db://`` when the invocation database is an SQLite file; else the broker's
  Redis when ``PYGIGO_BROKER_URL`` is ``redis://``/``rediss://``; else ``db://`` when the
  invocation database is PostgreSQL; else none;
* ``redis://…`` / ``rediss://…``: Redis pub/sub on that server (e.g. a RabbitMQ or SQS site with a
  Redis at hand);
* ``db://``: through the invocation database: LISTEN/NOTIFY on PostgreSQL; on SQLite, whose
  processes share the machine its file is on, Unix datagram sockets in a directory beside the
  file, like its ``-wal`` and ``-shm`` files (one syscall per notice, no server);
* ``none``: no notices.

Each invocation has a channel of its own (``pygigo:done:<id>`` on Redis, ``pygigo_done_<id>`` on
PostgreSQL, a socket named ``<id>`` on SQLite), so a notice reaches only the process that waits
for it, and one nobody waits for costs its sender one PUBLISH (NOTIFY, datagram) that reaches
nobody. On Redis and PostgreSQL a waiter borrows a subscriber connection from a small pool of its
process (waits are capped per process, see :mod:`.api.waiting`) and hands it back afterwards.
After a failure a channel is left alone for ``RETRY_AFTER_S``, by senders and waiters alike, so a
channel that is down costs one failed attempt per few seconds, not one per invocation.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.db import connections, router

from pygigo.platform import settings as pygigo_settings

logger = logging.getLogger("pygigo.completion")

DEFAULT_FALLBACK_POLL_S = 1.0
RETRY_AFTER_S = 5.0
#: Subscriber connections a process keeps open between waits.
POOL_SIZE = 8
#: Longest a subscribe may take before the waiter polls instead.
SUBSCRIBE_TIMEOUT_S = 1.0


def fallback_poll_s() -> float:
    """How often a waiter with a live subscription still reads the row."""
    return float(pygigo_settings.setting("PYGIGO_WAIT_FALLBACK_POLL_S", DEFAULT_FALLBACK_POLL_S))


class Notice:
    """One waiter's subscription to one invocation's channel."""

    def __init__(self, channel: Channel, conn: Any, key: str) -> None:
        self._channel, self._conn, self._key = channel, conn, key
        self.alive = True

    def wait(self, timeout_s: float) -> bool:
        """True once notified, or when the subscription broke (read the row, then poll)."""
        try:
            return self._channel.wait(self._conn, self._key, timeout_s)
        except Exception as exc:
            self.alive = False
            self._channel.failed(exc)
            return True


class Channel:
    """A notice channel: publishes, and lends subscriber connections from a pool."""

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._down_until = 0.0

    # -- what a transport implements ------------------------------------------------------

    def _publish(self, key: str) -> None:
        raise NotImplementedError

    def _connect(self) -> Any:
        raise NotImplementedError

    def _subscribe(self, conn: Any, key: str) -> None:
        """Returns once the server has registered the subscription."""
        raise NotImplementedError

    def wait(self, conn: Any, key: str, timeout_s: float) -> bool:
        raise NotImplementedError

    def _unsubscribe(self, conn: Any, key: str) -> None:
        raise NotImplementedError

    def _close(self, conn: Any) -> None:
        conn.close()

    # -- shared ---------------------------------------------------------------------------

    def up(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        if self.up():
            logger.warning("Completion notices via %s failed (%s); waiters poll the database.", self, exc)
        self._down_until = time.monotonic() + RETRY_AFTER_S

    def publish(self, key: str) -> None:
        """Announce that invocation ``key`` changed; never raises (waiters fall back)."""
        if not self.up():
            return
        try:
            self._publish(key)
        except Exception as exc:
            self.failed(exc)

    @contextmanager
    def subscription(self, key: str) -> Iterator[Notice | None]:
        """A notice for ``key``, or None while the channel is down."""
        conn = self._take(key)
        if conn is None:
            yield None
            return
        notice = Notice(self, conn, key)
        try:
            yield notice
        finally:
            self._give_back(conn, key, notice.alive)

    def _take(self, key: str) -> Any:
        if not self.up():
            return None
        with self._lock:
            pooled = self._idle.pop() if self._idle else None
        if pooled is not None:
            try:
                self._subscribe(pooled, key)
                return pooled
            except Exception:
                # Idle connections go stale (the server restarted): a fresh one decides.
                self._discard(pooled)
        conn = None
        try:
            conn = self._connect()
            self._subscribe(conn, key)
        except Exception as exc:
            self.failed(exc)
            if conn is not None:
                self._discard(conn)
            return None
        return conn

    def _give_back(self, conn: Any, key: str, alive: bool) -> None:
        if alive:
            try:
                self._unsubscribe(conn, key)
            except Exception as exc:
                self.failed(exc)
            else:
                with self._lock:
                    if len(self._idle) < POOL_SIZE:
                        self._idle.append(conn)
                        return
        self._discard(conn)

    def _discard(self, conn: Any) -> None:
        try:
            self._close(conn)
        except Exception:
            logger.debug("Closing a subscriber connection failed", exc_info=True)


class RedisChannel(Channel):
    """Redis pub/sub."""

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis

        self.url = url
        # Timeouts bound what a hung server can cost a worker's publish.
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        return f"Redis at {parts.hostname or '127.0.0.1'}:{parts.port or 6379}"

    @staticmethod
    def name(key: str) -> str:
        return f"pygigo:done:{key}"

    def _publish(self, key: str) -> None:
        self.client.publish(self.name(key), b"")

    def _connect(self) -> Any:
        return self.client.pubsub()

    def _subscribe(self, conn: Any, key: str) -> None:
        conn.subscribe(self.name(key))
        if not self._next(conn, key, "subscribe", SUBSCRIBE_TIMEOUT_S):
            raise TimeoutError(f"no confirmation of SUBSCRIBE within {SUBSCRIBE_TIMEOUT_S}s")

    def wait(self, conn: Any, key: str, timeout_s: float) -> bool:
        return self._next(conn, key, "message", timeout_s)

    def _next(self, conn: Any, key: str, kind: str, timeout_s: float) -> bool:
        """Reads until a ``kind`` message on ``key``'s channel, or ``timeout_s``. Others are
        left over from the connection's earlier waits (their unsubscribes, late notices)."""
        wanted = self.name(key).encode()
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            message = conn.get_message(timeout=remaining)
            if message is not None and message["type"] == kind and message["channel"] == wanted:
                return True
        return False

    def _unsubscribe(self, conn: Any, key: str) -> None:
        # No need to read the confirmation: the next waiter on this connection skips it.
        conn.unsubscribe(self.name(key))


class PostgresChannel(Channel):
    """PostgreSQL LISTEN/NOTIFY on a Django database alias. Subscriber connections are
    dedicated autocommit ones (not Django's), like the db:// broker's doorbell."""

    def __init__(self, alias: str) -> None:
        super().__init__()
        self.alias = alias

    def __str__(self) -> str:
        return f"LISTEN/NOTIFY on database {self.alias!r}"

    @staticmethod
    def name(key: str) -> str:
        return f"pygigo_done_{key}"  # 44 characters: within PostgreSQL's 63 for identifiers

    def _publish(self, key: str) -> None:
        # Django's connection of this thread: inside a transaction delivered at its commit.
        with connections[self.alias].cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [self.name(key)])

    def _connect(self) -> Any:
        wrapper = connections[self.alias]
        conn = wrapper.get_new_connection(wrapper.get_connection_params())
        conn.autocommit = True
        return conn

    def _command(self, conn: Any, verb: str, key: str) -> None:
        from psycopg import sql

        conn.execute(sql.SQL(verb + " {}").format(sql.Identifier(self.name(key))))

    def _subscribe(self, conn: Any, key: str) -> None:
        self._command(conn, "LISTEN", key)  # in autocommit: registered when execute returns

    def wait(self, conn: Any, key: str, timeout_s: float) -> bool:
        wanted = self.name(key)
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            # Notices of the connection's earlier channels may still be buffered: skipped.
            for notify in conn.notifies(timeout=remaining, stop_after=1):
                if notify.channel == wanted:
                    return True
        return False

    def _unsubscribe(self, conn: Any, key: str) -> None:
        self._command(conn, "UNLISTEN", key)


class SocketChannel(Channel):
    """Unix datagram sockets for an SQLite invocation database: the waiter binds
    ``<directory>/<id>``, the sender sends one byte to that path."""

    def __init__(self, database: str) -> None:
        super().__init__()
        self.directory = _socket_directory(database)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def __str__(self) -> str:
        return f"Unix sockets in {self.directory}"

    def _publish(self, key: str) -> None:
        try:
            self._sender.sendto(b"\0", str(self.directory / key))
        except (FileNotFoundError, ConnectionRefusedError):
            pass  # nobody waits (or a waiter died and left its socket file)
        except BlockingIOError:
            pass  # rung already and not read yet

    @contextmanager
    def subscription(self, key: str) -> Iterator[Notice | None]:
        path = self.directory / key
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            # Another request of this machine already waits for the same invocation (or one
            # that died did): this one polls. Anything else disables the channel for a while.
            if exc.errno != errno.EADDRINUSE:
                self.failed(exc)
            yield None
            return
        try:
            yield Notice(self, sock, key)
        finally:
            sock.close()
            with contextlib.suppress(OSError):
                path.unlink()

    def wait(self, conn: Any, key: str, timeout_s: float) -> bool:
        conn.settimeout(timeout_s)
        try:
            conn.recv(16)
        except TimeoutError:
            return False
        return True


def _socket_directory(database: str) -> Path:
    """Beside the file (``<file>-pygigo-done``), like SQLite's own ``-wal`` and ``-shm`` files,
    which every process using the file must reach anyway (a container with its own temp dir
    included); in the temp dir when a socket path there would pass its 107 bytes."""
    path = os.path.realpath(database)
    beside = Path(path + "-pygigo-done")
    if len(str(beside)) + 33 <= 107:  # "/" and a 32-digit id
        return beside
    digest = hashlib.sha1(path.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pygigo-done-{os.getuid()}-{digest}"


_channels: dict[str, Channel | None] = {}
_channels_lock = threading.Lock()


def _spec() -> str:
    """The configured channel, ``auto`` resolved: a redis URL, ``db://`` or ``none``."""
    configured = str(pygigo_settings.setting("PYGIGO_COMPLETION_URL", "") or "auto").strip()
    if configured != "auto":
        return configured
    database = connections[_alias()]
    # SQLite first: its sockets cost a syscall where Redis costs a round trip.
    if _sqlite_file(database) is not None:
        return "db://"
    broker = pygigo_settings.broker_url()
    if broker.startswith(("redis://", "rediss://")):
        # The broker's own options (namespace, …) mean nothing to a plain Redis client.
        return urlunsplit(urlsplit(broker)._replace(query="", fragment=""))
    return "db://" if database.vendor == "postgresql" else "none"


def _sqlite_file(database: Any) -> str | None:
    """The file of an SQLite database (None: another vendor, or in memory)."""
    name = str(database.settings_dict.get("NAME") or "")
    if database.vendor != "sqlite" or not name or name == ":memory:" or "mode=memory" in name:
        return None
    return name


def _alias() -> str:
    from .models import Invocation

    return router.db_for_write(Invocation)


def _build(spec: str) -> Channel | None:
    if spec.startswith(("redis://", "rediss://")):
        try:
            return RedisChannel(spec)
        except ImportError:
            logger.warning("PYGIGO_COMPLETION_URL is Redis but redis-py is missing: waiters poll.")
            return None
    if spec == "db://":
        alias = _alias()
        if connections[alias].vendor == "postgresql":
            return PostgresChannel(alias)
        if (database := _sqlite_file(connections[alias])) is not None:
            return SocketChannel(database)
        logger.warning(
            "PYGIGO_COMPLETION_URL=db:// needs PostgreSQL or an SQLite file; database %r is "
            "neither: waiters poll it.",
            alias,
        )
        return None
    if spec != "none":
        logger.warning("PYGIGO_COMPLETION_URL=%r is not redis://…, db:// or none: waiters poll.", spec)
    return None


def channel() -> Channel | None:
    """This process's channel for the current settings (None: waiters poll)."""
    spec = _spec()
    try:
        return _channels[spec]
    except KeyError:
        with _channels_lock:
            if spec not in _channels:
                _channels[spec] = _build(spec)
            return _channels[spec]


def announce(key: str) -> None:
    """Tell waiters of invocation ``key`` (hex id) to read its row. Never raises."""
    try:
        current = channel()
    except Exception as exc:  # e.g. a database that cannot be reached to learn its vendor
        logger.debug("No completion channel: %s", exc)
        return
    if current is not None:
        current.publish(key)


@contextmanager
def subscription(key: str) -> Iterator[Notice | None]:
    """A notice for invocation ``key`` (hex id), or None: no channel, or it is down."""
    current = channel()
    if current is None:
        yield None
        return
    with current.subscription(key) as notice:
        yield notice

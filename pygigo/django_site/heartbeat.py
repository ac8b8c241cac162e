"""Who runs an invocation right now: holders, their heartbeat, and recovery of dead ones.

A worker that starts an invocation writes a *holder* token (host/pid/random) into its row and
this process's heartbeat thread refreshes ``heartbeat_at`` every ``PYGIGO_HEARTBEAT_S``
(default 5 s) while the body runs. A holder whose heartbeat is older than
``STALE_HEARTBEATS`` intervals is dead (SIGKILL, out of memory, power): a redelivery of its
message may take the invocation over (see :mod:`.tracking`). The stale window is a few
heartbeats, not the function's time limit, because every broker redelivers within about a
minute, and a long-running body keeps its heartbeat fresh however long it runs.

:func:`recover_stuck` (the ``requeue_expired_leases`` maintenance job) sends again the
invocations whose holder died and whose message no broker redelivered.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from pygigo.adapters.base import BrokerError
from pygigo.platform import invocations, runtime
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.poison import WORKER_DIED
from pygigo.platform.registry import registry

from .models import Invocation, Status
from .store import notify, stored_envelope

logger = logging.getLogger("pygigo.tracking")

DEFAULT_HEARTBEAT_S = 5.0
#: Missed heartbeats after which a holder counts as dead.
STALE_HEARTBEATS = 3
#: The maintenance job resends only what no broker redelivered by then (they all do within
#: about a minute of the worker's death).
DEFAULT_RECOVER_AFTER_S = 300.0


def interval_s() -> float:
    return float(pygigo_settings.setting("PYGIGO_HEARTBEAT_S", DEFAULT_HEARTBEAT_S))


def stale_after() -> timedelta:
    return timedelta(seconds=interval_s() * STALE_HEARTBEATS)


def stale_holder(now: Any) -> Q:
    """Running rows whose holder stopped beating (a null heartbeat predates heartbeats)."""
    cutoff = now - stale_after()
    return Q(status=Status.RUNNING) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))


def new_holder() -> str:
    return f"{socket.gethostname()[:64]}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


class _Beater(threading.Thread):
    """Refreshes the heartbeat of every invocation this process holds, one UPDATE a beat."""

    def __init__(self) -> None:
        super().__init__(name="pygigo-invocation-heartbeat", daemon=True)
        self.held: set[str] = set()
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            time.sleep(interval_s())
            with self.lock:
                held = list(self.held)
            if not held:
                continue
            try:
                close_old_connections()
                Invocation.objects.filter(holder__in=held, status=Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
            except Exception as exc:  # a database hiccup: the next beat tries again
                logger.warning("Invocation heartbeat failed: %s", exc)
                connection.close()


_beater: _Beater | None = None
_beater_pid = 0
_beater_lock = threading.Lock()


def _running_beater() -> _Beater:
    global _beater, _beater_pid
    with _beater_lock:
        # Threads do not survive fork: a forked worker process starts its own.
        if _beater is None or _beater_pid != os.getpid():
            _beater, _beater_pid = _Beater(), os.getpid()
            _beater.start()
        return _beater


def hold(holder: str) -> None:
    beater = _running_beater()
    with beater.lock:
        beater.held.add(holder)


def release(holder: str) -> None:
    beater = _running_beater()
    with beater.lock:
        beater.held.discard(holder)


def recover_stuck(older_than_s: float = DEFAULT_RECOVER_AFTER_S) -> int:
    """Send again every invocation stuck in ``running`` whose holder's heartbeat stopped
    ``older_than_s`` ago (at least the stale window), or mark it dead when it used all its
    runs. Returns how many it recovered. The resent envelope lacks the secret headers
    (they are never stored). Duplicates are harmless: the worker's fencing runs one."""
    now = timezone.now()
    cutoff = now - max(stale_after(), timedelta(seconds=older_than_s))
    stuck = Invocation.objects.filter(stale_holder(now)).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    recovered = 0
    for row in stuck.only("id", "function", "attempts", "holder", "envelope"):
        mine = Invocation.objects.filter(id=row.id, status=Status.RUNNING, holder=row.holder)
        function = registry.get(row.function)
        if function is None:
            logger.warning("Invocation %s is stuck but %r is not loaded here", row.id, row.function)
            continue
        limit = function.options.max_retries + 1
        if row.attempts >= limit:
            if mine.update(status=Status.DEAD, error=WORKER_DIED, finished_at=now, holder=""):
                notify(row.id)
            recovered += 1
            continue
        message = invocations.envelope_message(stored_envelope(row), function)
        if not mine.update(status=Status.RETRYING, holder=""):
            continue  # taken over meanwhile
        try:
            runtime.get_broker().enqueue(message)
        except BrokerError as exc:  # still retrying: the next run of the job tries again
            Invocation.objects.filter(id=row.id, status=Status.RETRYING).update(status=Status.RUNNING)
            logger.warning("Invocation %s: cannot resend yet: %s", row.id, exc)
            continue
        recovered += 1
    if recovered:
        logger.warning("Recovered %d invocation(s) whose worker died", recovered)
    return recovered

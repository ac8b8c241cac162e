"""The outbox relay: send invocations the broker did not take when they were accepted.

``POST /fn/<name>`` records the invocation (``relayed=False``, sealed envelope in ``wire``)
before sending; if the broker is down the client still gets ``202`` and the row waits here.
:func:`relay` sends waiting rows oldest first and stops at the first broker error, so
invocations reach the broker in the order they were accepted.

Exactly once per invocation: a relay claims each row (a conditional UPDATE of
``relay_claimed_at``, atomic on PostgreSQL and SQLite alike) before sending it, so two relays
running at once never send one row twice. A relay that dies holding a claim gives it up after
``CLAIM_TIMEOUT_S``; if it died after sending but before flagging the row relayed, the row is
sent again and the worker's conditional ``queued → running`` UPDATE (see :mod:`.tracking`)
runs it once.

Relaying is automatic: a web process whose send found the broker down starts a relay thread
(every ``RELAY_INTERVAL_S`` until the outbox is empty; ``PYGIGO_OUTBOX_AUTO_RELAY = False``
turns it off), and the scheduler's ``relay_outbox`` maintenance job runs :func:`relay` every
10 s. ``manage.py pygigo_relay`` runs a relay loop of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from pygigo.adapters.base import BrokerError, BrokerUnavailable
from pygigo.platform import invocations, runtime
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.registry import registry

from . import store
from .models import STARTABLE, Invocation
from .tasks.execution import deferred_ms

logger = logging.getLogger("pygigo.outbox")

#: Rows younger than this may still be in the hands of the web request that created them.
DEFAULT_MIN_AGE_S = 5.0
#: A claim older than this belongs to a relay that died (or hangs): another may take the row.
CLAIM_TIMEOUT_S = 60.0
#: How often a web process's relay thread looks while the outbox is not empty.
RELAY_INTERVAL_S = 1.0


def pending() -> int:
    """How many invocations wait in the outbox."""
    return Invocation.objects.filter(relayed=False).count()


def relay(*, min_age_s: float = DEFAULT_MIN_AGE_S, batch: int = 500) -> int:
    """Send up to ``batch`` waiting invocations older than ``min_age_s``; returns how many
    were sent. Stops early (without raising) when the broker is still unavailable."""
    cutoff = timezone.now() - timedelta(seconds=min_age_s)
    rows = list(
        Invocation.objects.filter(relayed=False, created_at__lte=cutoff)
        .order_by("created_at")
        .only("id", "function", "queue", "status", "wire", "envelope")[:batch]
    )
    broker = runtime.get_broker()
    sent = 0
    for row in rows:
        if not _claim(row.id, timezone.now()):
            continue  # another relay has it
        if row.status not in STARTABLE or not row.wire:
            # Cancelled while waiting, or nothing to send: nothing will ever run it.
            Invocation.objects.filter(id=row.id).update(relayed=True, wire="")
            continue
        function = registry.get(row.function)
        message = invocations.wire_message(
            row.wire, row.id.hex, row.queue, invocations.message_options(function)
        )
        try:
            broker.enqueue(message, delay=deferred_ms(row.envelope))
        except BrokerUnavailable as exc:
            Invocation.objects.filter(id=row.id).update(relay_claimed_at=None)
            logger.warning("Outbox: broker still unavailable (%s); %d sent, will retry", exc, sent)
            break
        except BrokerError as exc:
            store.undeliverable(row.id, exc)
            continue
        Invocation.objects.filter(id=row.id).update(relayed=True, wire="")
        sent += 1
    if sent:
        logger.info("Outbox: relayed %d invocation(s)", sent)
    return sent


def _claim(row_id: object, now: datetime) -> bool:
    """Take the row for this relay; False if another relay holds a live claim or sent it."""
    expired = now - timedelta(seconds=CLAIM_TIMEOUT_S)
    unclaimed = Q(relay_claimed_at__isnull=True) | Q(relay_claimed_at__lt=expired)
    return bool(Invocation.objects.filter(unclaimed, id=row_id, relayed=False).update(relay_claimed_at=now))


def _relay_every(interval_s: float, min_age_s: float, done: Callable[[], bool]) -> None:
    while not done():
        try:
            relay(min_age_s=min_age_s)
        except Exception:  # a database hiccup must not kill the loop
            logger.exception("Outbox relay failed; retrying in %.1fs", interval_s)
        finally:
            close_old_connections()


def run_forever(
    stop: threading.Event, *, interval_s: float = 1.0, min_age_s: float = DEFAULT_MIN_AGE_S
) -> None:
    """Relay every ``interval_s`` until ``stop`` is set (for a thread or a command)."""
    _relay_every(interval_s, min_age_s, lambda: stop.wait(interval_s))


_relayer: threading.Thread | None = None
_relayer_lock = threading.Lock()


def relay_soon() -> None:
    """Start this process's relay thread unless it runs (a send found the broker down): it
    relays every ``RELAY_INTERVAL_S`` until the outbox is empty, then ends."""
    global _relayer
    if not pygigo_settings.setting("PYGIGO_OUTBOX_AUTO_RELAY", True):
        return
    with _relayer_lock:
        if _relayer is None or not _relayer.is_alive():
            _relayer = threading.Thread(target=_relay_until_empty, name="pygigo-outbox-relay", daemon=True)
            _relayer.start()


def _relay_until_empty() -> None:
    stop = threading.Event()
    try:
        _relay_every(
            RELAY_INTERVAL_S, DEFAULT_MIN_AGE_S, lambda: stop.wait(RELAY_INTERVAL_S) or not pending()
        )
    finally:
        connection.close()

"""The outbox relay: send invocations the broker did not take when they were accepted.

``POST /fn/<name>`` records the invocation (``relayed=False``, sealed envelope in ``wire``)
before sending; if the broker is down the client still gets ``202`` and the row waits here.
:func:`relay` sends waiting rows oldest first and stops at the first broker error, so
invocations reach the broker in the order they were accepted.

Exactly once per invocation: a row is flagged relayed after the broker took it; if a relay
dies between the two (or two relays run at once) the message may be sent twice, and the
worker's conditional ``queued → running`` UPDATE (see :mod:`.tracking`) runs it only once.

Run it with ``manage.py pygigo_relay`` (a loop), or call :func:`relay` from a scheduler.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from pygigo.adapters.base import BrokerError, BrokerUnavailable
from pygigo.platform import invocations, runtime
from pygigo.platform.registry import registry

from . import store
from .models import STARTABLE, Invocation
from .tasks.execution import deferred_ms

logger = logging.getLogger("pygigo.outbox")

#: Rows younger than this may still be in the hands of the web request that created them.
DEFAULT_MIN_AGE_S = 5.0


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


def run_forever(
    stop: threading.Event, *, interval_s: float = 1.0, min_age_s: float = DEFAULT_MIN_AGE_S
) -> None:
    """Relay every ``interval_s`` until ``stop`` is set (for a thread or a command)."""
    while not stop.is_set():
        try:
            relay(min_age_s=min_age_s)
        except Exception:  # a database hiccup must not kill the loop
            logger.exception("Outbox relay failed; retrying in %.1fs", interval_s)
        finally:
            close_old_connections()
        stop.wait(interval_s)

"""The outbox relays by itself and never sends one invocation twice, and the maintenance job
recovers invocations whose worker died with no message left to redeliver."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import dramatiq
from django.test import Client, override_settings
from django.utils import timezone

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site import outbox, store
from pygigo.django_site.models import Invocation, Status
from pygigo.platform import invocations, maintenance
from pygigo.platform.envelope import Envelope
from tests.conftest import wait_until

from . import functions
from .conftest import PrivateRedis
from .test_redis import redis_broker


def waiting_in_the_outbox(count: int) -> list[str]:
    """``count`` accepted invocations the broker never got (as after an outage)."""
    ids = []
    for n in range(count):
        envelope = Envelope(function="fe_count", kind="call", args=(f"outbox-{n}",))
        message = invocations.envelope_message(envelope, functions.fe_count)
        Invocation.objects.create(
            id=uuid.UUID(envelope.id),
            function="fe_count",
            queue=functions.QUEUE,
            kind="call",
            wire=message.args[0],
        )
        ids.append(envelope.id)
    return ids


def test_two_relays_at_once_send_each_invocation_once(broker: PygigoBroker) -> None:
    ids = waiting_in_the_outbox(100)
    start = threading.Barrier(2)
    sent: list[int] = []

    def relay() -> None:
        start.wait()
        sent.append(outbox.relay(min_age_s=0))

    relays = [threading.Thread(target=relay) for _ in range(2)]
    for thread in relays:
        thread.start()
    for thread in relays:
        thread.join()
    assert sum(sent) == 100
    assert broker.queue_stats(functions.QUEUE).ready == 100
    assert not Invocation.objects.filter(id__in=ids, relayed=False).exists()


@override_settings(PYGIGO_OUTBOX_AUTO_RELAY=True)
def test_what_was_accepted_during_an_outage_is_relayed_without_a_command(private_redis: PrivateRedis) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?namespace=ob{functions.RUN}"
    with redis_broker(url) as broker:
        broker.ping()
        private_redis.stop()
        try:
            ids = []
            for n in range(20):
                response = Client().post("/fn/fe_echo", data=f"n={n}".encode(), content_type="text/plain")
                assert response.status_code == 202
                ids.append(response.json()["id"])
            assert Invocation.objects.filter(id__in=ids, relayed=False).count() == 20
        finally:
            private_redis.start()
        wait_until(
            lambda: not Invocation.objects.filter(id__in=ids, relayed=False).exists(),
            60,
            "the web process to relay its outbox",
        )
        assert broker.queue_stats(functions.QUEUE).ready == 20  # each exactly once


def test_the_maintenance_job_recovers_an_invocation_stuck_running(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    """Its worker died and no broker holds its message any more: only the job can save it."""
    worker.pause()
    invocation, _ = store.submit(
        Envelope(function="fe_count", kind="call", args=("stuck",)), functions.fe_count
    )
    broker.flush(functions.QUEUE)
    long_ago = timezone.now() - timedelta(hours=1)
    Invocation.objects.filter(id=invocation.id).update(
        status=Status.RUNNING, attempts=1, holder="dead/1/x", heartbeat_at=long_ago, started_at=long_ago
    )
    assert maintenance.requeue_expired_leases()["invocations"] == 1
    worker.resume()
    row = store.wait_for(invocation.id, 10)
    assert row is not None and (row.status, row.attempts) == (Status.SUCCEEDED, 2)
    assert functions.calls == ["stuck"]

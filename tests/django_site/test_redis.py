"""The API on Redis: Prefer-wait round trip through a real broker, and the outbox when the
broker goes down and comes back."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import dramatiq
from django.test import Client

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.django_site import outbox, store
from pygigo.django_site.models import Invocation, Status
from pygigo.platform import runtime
from tests.conftest import require_service

from . import functions
from .conftest import PrivateRedis

RUN = functions.RUN


def _cleanup(broker: PygigoBroker) -> None:
    client = broker.client  # type: ignore[attr-defined]
    keys = list(client.scan_iter(f"{broker.namespace}:*"))  # type: ignore[attr-defined]
    if keys:
        client.delete(*keys)


@contextlib.contextmanager
def redis_broker(url: str) -> Iterator[PygigoBroker]:
    built = build_broker(url, middleware=runtime.build_middleware())
    runtime.set_broker(built)
    try:
        yield built
    finally:
        with contextlib.suppress(Exception):
            _cleanup(built)
        runtime.reset()


@contextlib.contextmanager
def in_process_worker(broker: PygigoBroker) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50, queues={functions.QUEUE})
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)


def test_prefer_wait_round_trip_on_redis() -> None:
    require_service("redis")
    url = f"redis://127.0.0.1:6379/15?namespace=fe{RUN}&heartbeat_timeout_ms=2000"
    with redis_broker(url) as broker, in_process_worker(broker):
        response = Client().post(
            "/fn/fe_echo", data=b"over redis", content_type="text/plain", headers={"Prefer": "wait=10"}
        )
        assert response.status_code == 201
        assert response.json()["body"] == "over redis"
        assert response["Preference-Applied"] == "wait=10"


def test_outbox_keeps_what_was_accepted_while_the_broker_was_down(private_redis: PrivateRedis) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?namespace=fe{RUN}"
    with redis_broker(url) as broker:
        broker.ping()
        private_redis.stop()
        try:
            ids = []
            for n in range(3):
                response = Client().post("/fn/fe_echo", data=f"n={n}".encode(), content_type="text/plain")
                assert response.status_code == 202  # accepted although the broker is down
                ids.append(response.json()["id"])
            assert not Invocation.objects.filter(id__in=ids, relayed=True).exists()
            assert outbox.relay(min_age_s=0) == 0  # still down: nothing sent, nothing lost
        finally:
            private_redis.start()
        assert outbox.relay(min_age_s=0) >= 3
        assert outbox.relay(min_age_s=0) == 0  # exactly once: nothing left to send
        assert broker.queue_stats(functions.QUEUE).ready == 3
        # In the order they were accepted (Dramatiq's Redis queue is a list, oldest first,
        # of Redis-side ids whose messages live in a hash).
        client, queue_key = broker.client, f"{broker.namespace}:{functions.QUEUE}"  # type: ignore[attr-defined]
        queued = [
            dramatiq.Message.decode(client.hget(queue_key + ".msgs", redis_id)).message_id
            for redis_id in client.lrange(queue_key, 0, -1)
        ]
        assert queued == ids
        with in_process_worker(broker) as worker:
            finished = [store.wait_for(i, 10) for i in ids]
            worker.join()
        assert [(row.status, row.attempts) for row in finished if row] == [(Status.SUCCEEDED, 1)] * 3
        bodies = [json.loads(row.result["body"])["body"] for row in finished if row and row.result]
        assert bodies == ["n=0", "n=1", "n=2"]

"""HTTP and tracked calls keep their function's priority on a broker with priorities: the
envelope message carries it to RabbitMQ (the envelope actor's own priority is 0)."""

from __future__ import annotations

import dramatiq
import pika
from django.test import Client

from pygigo.adapters.base import build_broker
from pygigo.adapters.rabbitmq import RabbitmqBroker
from pygigo.django_site import store
from pygigo.platform import runtime
from tests.conftest import require_service, wait_until

from . import functions

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_http_and_tracked_calls_run_in_their_functions_priority_order() -> None:
    require_service("rabbitmq")
    broker = build_broker(URL, middleware=runtime.build_middleware())
    assert isinstance(broker, RabbitmqBroker) and broker.capabilities.supports_priority
    runtime.set_broker(broker)
    functions.calls.clear()
    try:
        ids = [functions.fe_low.invoke(f"tracked{n}") for n in range(3)]
        for n in range(3):
            response = Client().post("/fn/fe_low", data=f'["http{n}"]', content_type="application/json")
            assert response.status_code == 202
            ids.append(response.json()["id"])
        ids += [functions.fe_high.invoke(f"tracked{n}") for n in range(2)]
        for n in range(2):
            response = Client().post("/fn/fe_high", data=f'["http{n}"]', content_type="application/json")
            assert response.status_code == 202
            ids.append(response.json()["id"])
        # Sent last, handed out first (priority 0 travels as no priority, which RabbitMQ treats as 0).
        assert peek_priorities(functions.QUEUE) == [9] * 4 + [None] * 6
        worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50, queues={functions.QUEUE})
        worker.start()
        try:
            wait_until(lambda: len(functions.calls) == 10, timeout=30, what="every call to run")
        finally:
            worker.stop(timeout=10_000)
        assert [call.split(":")[0] for call in functions.calls] == ["high"] * 4 + ["low"] * 6
        assert all(store.wait_for(i, 10) for i in ids)
    finally:
        broker.delete_queue(functions.QUEUE)
        runtime.reset()


def peek_priorities(queue: str) -> list[int | None]:
    """The AMQP priority of each message waiting in ``queue``, read and put back unacked."""
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        priorities = []
        while True:
            method, properties, _ = channel.basic_get(queue)
            if method is None:
                break
            priorities.append(properties.priority)
        return priorities  # closing the connection requeues everything it got
    finally:
        connection.close()

"""What is specific to redis:// (the shared behaviour is in tests/conformance): an idle consumer
blocks on its queue's list and wakes when a message arrives, instead of polling."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest

from pygigo.adapters.base import build_broker
from pygigo.adapters.redis import RedisBroker
from tests.conftest import missing, wait_until
from tests.django_site.conftest import PrivateRedis

QUEUE = "q"


@pytest.fixture
def broker() -> Iterator[RedisBroker]:
    """A broker on a redis-server of its own: its blocked-client count is ours alone."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed (apt-get install redis-server)")
    server = PrivateRedis()
    server.start()
    try:
        built = build_broker(f"redis://127.0.0.1:{server.port}/0?namespace=t")
        assert isinstance(built, RedisBroker)
        built.declare_queue(QUEUE)
        yield built
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


def blocked_clients(broker: RedisBroker) -> int:
    return int(broker.client.info("clients")["blocked_clients"])


def next_in_thread(consumer: Any) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(next(consumer)), daemon=True)
    thread.start()
    return thread, got


def message() -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=QUEUE, actor_name="a", args=(), kwargs={}, options={})


def test_an_idle_consumer_blocks_until_a_message_arrives(broker: RedisBroker) -> None:
    consumer = broker.consume(QUEUE, prefetch=1, timeout=60_000)
    thread, got = next_in_thread(consumer)
    wait_until(lambda: blocked_clients(broker) == 1, what="the consumer to block on its queue")
    sent = broker.enqueue(message())
    thread.join(timeout=30)
    assert got and got[0] is not None and got[0].message_id == sent.message_id
    assert broker.queue_stats(QUEUE).ready == 0  # fetched the usual way: held until acked
    consumer.ack(got[0])


def test_a_busy_or_delay_queue_consumer_polls_instead(broker: RedisBroker) -> None:
    delay_consumer = broker.consume(f"{QUEUE}.DQ", prefetch=1, timeout=60_000)
    thread, got = next_in_thread(delay_consumer)
    thread.join(timeout=30)  # back without a message: it must release due messages on time
    assert got == [None] and blocked_clients(broker) == 0

    consumer = broker.consume(QUEUE, prefetch=1, timeout=60_000)
    broker.enqueue(message())
    held = next(consumer)  # its prefetch is now full
    broker.enqueue(message())
    thread, got = next_in_thread(consumer)
    thread.join(timeout=30)
    assert got == [None] and broker.queue_stats(QUEUE).ready == 1
    consumer.ack(held)

"""Raw Dramatiq no-op actor; also the broker module for the ``dramatiq`` worker CLI.

Redis: ``RedisBroker`` with the run's queue name as namespace.
RabbitMQ: ``RabbitmqBroker(confirm_delivery=True)``.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from bench.completion import record

QUEUE = os.environ.get("BENCH_QUEUE", "bench")
_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

broker: dramatiq.Broker
if os.environ.get("BENCH_BROKER", "redis") == "rabbitmq":
    broker = RabbitmqBroker(url=_URL, confirm_delivery=True)
else:
    broker = RedisBroker(url=_URL, namespace=QUEUE)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=QUEUE)
def noop() -> None:
    record()

"""Raw broker clients, enqueue only: redis-py ``LPUSH``; pika ``basic_publish`` without and with confirms;
boto3 ``send_message`` (sqs://, against moto).

The payload is a Dramatiq-shaped JSON message built (uuid, timestamp, ``json.dumps``) per send, so the
client-side work is comparable to what the task systems do. pika messages are persistent (delivery_mode=2)
into a durable queue.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from bench.common import BenchConfig, Result, cleanup, time_enqueue


def payload(queue: str) -> bytes:
    return json.dumps(
        {
            "queue_name": queue,
            "actor_name": "noop",
            "args": [],
            "kwargs": {},
            "options": {},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000),
        }
    ).encode()


def measure_redis(cfg: BenchConfig) -> list[Result]:
    import redis

    client = redis.Redis.from_url(cfg.broker_url)
    key = f"{cfg.queue}:raw"
    with cleanup(cfg):
        send: Callable[[], object] = lambda: client.lpush(key, payload(cfg.queue))  # noqa: E731
        rate = time_enqueue(send, cfg.messages, "redis-py LPUSH")
    return [Result(cfg.broker, "redis_lpush", "redis-py LPUSH", enqueue_rate=rate)]


def measure_rabbit(cfg: BenchConfig) -> list[Result]:
    import pika

    results = []
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    with cleanup(cfg, rabbit_queues=[cfg.queue]):
        conn = pika.BlockingConnection(pika.URLParameters(cfg.broker_url))
        try:
            for key, label, confirms in (
                ("pika", "pika publish", False),
                ("pika_confirms", "pika publish + confirms", True),
            ):
                channel = conn.channel()
                channel.queue_declare(cfg.queue, durable=True)
                if confirms:
                    channel.confirm_delivery()

                def send(ch: pika.adapters.blocking_connection.BlockingChannel = channel) -> None:
                    ch.basic_publish("", cfg.queue, payload(cfg.queue), props)

                rate = time_enqueue(send, cfg.messages, label)
                results.append(Result(cfg.broker, key, label, enqueue_rate=rate))
                channel.queue_purge(cfg.queue)
                channel.close()
        finally:
            conn.close()
    return results


def measure_sqs(cfg: BenchConfig) -> list[Result]:
    """boto3 ``send_message`` one at a time into a queue of its own (deleted afterwards)."""
    import boto3

    endpoint = parse_qs(urlsplit(cfg.broker_url).query)["endpoint_url"][0]
    client = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    url = client.create_queue(QueueName=f"bench-{cfg.queue}-raw")["QueueUrl"]
    try:
        with cleanup(cfg):
            send: Callable[[], object] = lambda: client.send_message(  # noqa: E731
                QueueUrl=url, MessageBody=payload(cfg.queue).decode()
            )
            rate = time_enqueue(send, cfg.messages, "boto3 send_message")
    finally:
        client.delete_queue(QueueUrl=url)
    return [Result(cfg.broker, "boto3_send", "boto3 send_message", enqueue_rate=rate)]


def measure(cfg: BenchConfig) -> list[Result]:
    if cfg.broker == "sqs":
        return measure_sqs(cfg)
    return measure_rabbit(cfg) if cfg.broker == "rabbitmq" else measure_redis(cfg)

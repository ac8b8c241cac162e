"""Measure the sqs:// adapter against a moto server: EMULATOR FIGURES, not AWS's.

moto runs in this process (a WSGI server thread), so its own CPU is in every number; use them
to compare Pygigo's paths with each other (one-by-one vs batched sends, drain rate), never with
Redis or RabbitMQ, and never as a forecast for AWS (network round trips of ~10-20 ms dominate).

    PYTHONPATH=. python bench/sqs_moto.py [messages]   # default 1000
"""

from __future__ import annotations

import os
import sys
import threading
import time

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR="false",
    DJANGO_SETTINGS_MODULE="pygigo.django_site.settings",
)

import logging
from urllib.parse import quote

import django
import dramatiq
from moto.server import ThreadedMotoServer

django.setup()
logging.getLogger("werkzeug").setLevel(logging.WARNING)

import pygigo  # noqa: E402
from pygigo.adapters.base import build_broker  # noqa: E402
from pygigo.platform import runtime  # noqa: E402

done = threading.Semaphore(0)


@pygigo.function(queue="bench")
def noop() -> None:
    done.release()


def main(count: int) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"sqs://?endpoint_url={quote(f'http://{host}:{port}', safe='')}&region=us-east-1&prefix=bench-"
    broker = build_broker(url, middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    broker.flush("bench")

    # Each phase starts from an empty queue: moto's SQS is O(queue depth) per call.
    client = broker.client  # type: ignore[attr-defined]
    queue_url, _ = broker.queue_urls("bench")  # type: ignore[attr-defined]
    body = noop.actor.message().encode().decode()
    start = time.perf_counter()
    for _ in range(count):
        client.send_message(QueueUrl=queue_url, MessageBody=body)
    raw = count / (time.perf_counter() - start)
    broker.flush("bench")

    start = time.perf_counter()
    for _ in range(count):
        noop.send()
    one_by_one = count / (time.perf_counter() - start)
    broker.flush("bench")

    messages = [noop.actor.message() for _ in range(count)]
    start = time.perf_counter()
    broker.enqueue_many(messages)  # type: ignore[attr-defined]
    batched = count / (time.perf_counter() - start)

    worker = dramatiq.Worker(broker, worker_threads=8)
    start = time.perf_counter()
    worker.start()
    for _ in range(count):
        done.acquire()
    drain = count / (time.perf_counter() - start)
    worker.stop()
    server.stop()
    print(f"sqs:// on moto (emulator), {count} messages")
    print(f"  raw boto3 send_message, one by one:   {raw:8.0f} msg/s")
    print(f"  enqueue one by one (SendMessage):     {one_by_one:8.0f} msg/s")
    print(f"  enqueue_many (SendMessageBatch):      {batched:8.0f} msg/s")
    print(f"  drain, 1 process x 8 threads:         {drain:8.0f} msg/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

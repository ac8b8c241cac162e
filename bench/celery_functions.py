"""Celery no-op task and app (``celery -A bench.celery_functions worker``).

Defaults kept where they matter for throughput: json serializer, prefetch multiplier 4, ``acks_late`` off,
publishes without confirms. Results are ignored (no backend). Remote control is off and every Redis key
is prefixed with the run's queue name, so concurrent Celery users of the same broker are not disturbed.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.completion import record

QUEUE = os.environ.get("BENCH_QUEUE", "bench")
_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_ignore_result=True,
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
if _URL.startswith("redis"):
    app.conf.broker_transport_options = {"global_keyprefix": f"{QUEUE}:"}


@app.task(name="bench.noop")
def noop() -> None:
    record()

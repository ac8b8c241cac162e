"""The Django task backend suite runs once per broker of the conformance suite (memory, Redis,
RabbitMQ, db:// on SQLite and PostgreSQL, SQS on moto), with an in-process Dramatiq worker.

Invocation rows (the task results) live in the default database whatever the broker."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import runtime
from tests.conformance.conftest import AdapterCase, _delete_redis_keys, case, running_worker, worker_env
from tests.conftest import migrate_database

from . import tasks

__all__ = ["case", "worker_env"]  # the conformance suite's fixtures, shared

QUEUES = (tasks.QUEUE, tasks.OTHER_QUEUE)


def _cleanup(case: AdapterCase, broker: PygigoBroker) -> None:
    for queue in QUEUES:
        broker.flush(queue)
    if case.name == "redis":
        _delete_redis_keys(broker)
    elif case.name in ("rabbitmq", "sqs"):
        for queue in QUEUES:
            broker.delete_queue(queue)  # type: ignore[attr-defined]


@pytest.fixture
def broker(case: AdapterCase) -> Iterator[PygigoBroker]:
    migrate_database("default")
    built = build_broker(case.url, middleware=runtime.build_middleware())
    runtime.set_broker(built)
    for queue in QUEUES:
        built.declare_queue(queue)
        built.flush(queue)
    yield built
    try:
        _cleanup(case, built)
    finally:
        runtime.reset()


@pytest.fixture
def worker(broker: PygigoBroker) -> Iterator[dramatiq.Worker]:
    with running_worker(broker, queues=set(QUEUES)) as running:
        yield running

"""One fixture per adapter; the conformance suite runs once against each.

Adding an adapter to the suite = adding one entry to ADAPTERS (and its service, if any).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import dramatiq
import pytest
from django.test import override_settings

from pygigo.adapters.base import Capabilities, PygigoBroker, build_broker
from pygigo.platform import runtime
from tests.conftest import migrate_database, require_service

from . import functions

RUN = functions.RUN


@dataclass
class AdapterCase:
    name: str
    url: str
    #: What the adapter must declare: pinned here, so a flag flipped in the adapter cannot
    #: quietly skip the test that checks it.
    capabilities: Capabilities
    service: str | None = None
    cleanup: Callable[[PygigoBroker], None] | None = None
    #: Run once before the first test of the case (e.g. migrate a database).
    setup: Callable[[], None] | None = None
    #: For brokers started by a fixture: the fixture's value (an endpoint) -> the URL.
    url_from: tuple[str, Callable[[str], str]] | None = None


def _delete_rabbit_queues(broker: PygigoBroker) -> None:
    for queue in (functions.QUEUE, functions.SLOW_QUEUE):
        broker.delete_queue(queue)  # type: ignore[attr-defined]


def _delete_sqs_queues(broker: PygigoBroker) -> None:
    for queue in (functions.QUEUE, functions.SLOW_QUEUE):
        broker.delete_queue(queue)  # type: ignore[attr-defined]


def _sqs_url(endpoint: str) -> str:
    # Short visibility timeout: the SIGKILL test waits for it to lapse; the heartbeat renews
    # it for everything still running.
    return (
        f"sqs://?endpoint_url={quote(endpoint, safe='')}&region=us-east-1&prefix=t{RUN}-"
        f"&visibility_timeout_s=3&wait_time_s=1&max_receive_count=5"
    )


def _delete_redis_keys(broker: PygigoBroker) -> None:
    client = broker.client  # type: ignore[attr-defined]
    keys = list(client.scan_iter(f"{broker.namespace}:*"))  # type: ignore[attr-defined]
    if keys:
        client.delete(*keys)


_DB = Capabilities(max_message_bytes=1024 * 1024, supports_priority=True, text_bodies=True)
ADAPTERS = {
    "memory": AdapterCase("memory", "memory://", Capabilities(durable=False)),
    "redis": AdapterCase(
        "redis",
        f"redis://127.0.0.1:6379/15?namespace=t{RUN}&heartbeat_timeout_ms=2000",
        Capabilities(),
        "redis",
        _delete_redis_keys,
    ),
    "rabbitmq": AdapterCase(
        "rabbitmq",
        "amqp://guest:guest@127.0.0.1:5672/%2F?max_priority=10",
        Capabilities(max_message_bytes=16 * 1024 * 1024, supports_priority=True),
        "rabbitmq",
        _delete_rabbit_queues,
    ),
    # A short lease, so the SIGKILL test sees redelivery within its 30 s.
    "db-sqlite": AdapterCase("db-sqlite", "db://?lease_s=5", _DB, setup=lambda: migrate_database("default")),
    "db-postgres": AdapterCase(
        "db-postgres", "db://postgres?lease_s=5", _DB, "postgres", setup=lambda: migrate_database("postgres")
    ),
    "sqs": AdapterCase(
        "sqs",
        "",
        Capabilities(max_message_bytes=1024 * 1024, text_bodies=True),
        cleanup=_delete_sqs_queues,
        url_from=("moto_endpoint", _sqs_url),
    ),
}


@pytest.fixture(params=list(ADAPTERS))
def case(request: pytest.FixtureRequest) -> AdapterCase:
    adapter_case = ADAPTERS[request.param]
    if adapter_case.service:
        require_service(adapter_case.service)
    if adapter_case.setup:
        adapter_case.setup()
    if adapter_case.url_from:
        fixture, make_url = adapter_case.url_from
        adapter_case = dataclasses.replace(adapter_case, url=make_url(request.getfixturevalue(fixture)))
    return adapter_case


#: Where results and group barriers live: the suite's workers run in the test process, so the
#: in-process store is enough here (a Redis store is tested in tests/platform/test_results.py).
RESULTS_URL = "memory://"


@pytest.fixture
def broker(case: AdapterCase) -> Iterator[PygigoBroker]:
    with override_settings(PYGIGO_RESULTS=RESULTS_URL):
        built = build_broker(case.url, middleware=runtime.build_middleware())
    runtime.set_broker(built)
    for queue in (functions.QUEUE, functions.SLOW_QUEUE):
        built.flush(queue)
    functions.record.clear()
    yield built
    try:
        for queue in (functions.QUEUE, functions.SLOW_QUEUE):
            built.flush(queue)
        if case.cleanup:
            case.cleanup(built)
    finally:
        runtime.reset()


def require(case: AdapterCase, capability: str) -> None:
    """Skip, naming the capability, when the adapter is not expected to have it (by the
    pinned capabilities, never by what the adapter happens to declare)."""
    if not getattr(case.capabilities, capability):
        pytest.skip(f"{case.name} lacks capability {capability!r}")


@contextlib.contextmanager
def running_worker(
    broker: PygigoBroker, *, threads: int = 4, queues: set[str] | None = None
) -> Iterator[dramatiq.Worker]:
    """An in-process worker on ``queues`` (default: every queue the process declared).

    Suites on db:// should name their queues: each consumer holds a database connection, and a
    worker consuming every test module's queues took ~40 of PostgreSQL's 100."""
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=50, queues=queues)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)


@pytest.fixture
def worker_env(case: AdapterCase) -> dict[str, str]:
    """Environment for a `pygigo worker` subprocess serving the conformance functions."""
    env = dict(os.environ)
    env["PYGIGO_BROKER_URL"] = case.url
    env["PYGIGO_RESULTS"] = RESULTS_URL
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    return env

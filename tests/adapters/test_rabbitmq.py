"""RabbitMQ-specific behaviour: publishing survives connections the server closes, and a
RabbitMQ restart mid-load loses no accepted message (durable queues, persistent messages,
publisher confirms)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from pygigo.adapters.base import build_broker
from pygigo.adapters.rabbitmq import RabbitmqBroker
from pygigo.platform import runtime
from tests.conformance import functions
from tests.conformance.conftest import running_worker
from tests.conftest import require_service, service_up, wait_until

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def rabbit() -> Iterator[RabbitmqBroker]:
    require_service("rabbitmq")
    broker = build_broker(URL, middleware=runtime.build_middleware())
    assert isinstance(broker, RabbitmqBroker)
    runtime.set_broker(broker)
    functions.record.clear()
    yield broker
    try:
        broker.delete_queue(functions.QUEUE)
    finally:
        runtime.reset()


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout


def close_connection_from_server(name: str) -> None:
    """What RabbitMQ does to an idle connection that missed its heartbeats (by its pid)."""
    for line in rabbitmqctl("list_connections", "name", "pid").splitlines():
        if line.startswith(name + "\t"):
            rabbitmqctl("close_connection", line.split("\t")[1], "test: server closes idle publisher")
            return
    raise AssertionError(f"connection {name!r} not found")


def test_publisher_survives_the_server_closing_its_connection(rabbit: RabbitmqBroker) -> None:
    functions.echo.send("closed")
    host, port = rabbit.connection._impl._transport._sock.getsockname()  # type: ignore[attr-defined]
    close_connection_from_server(f"{host}:{port} -> 127.0.0.1:5672")
    functions.echo.send("closed")  # reconnects and publishes, no error
    assert rabbit.queue_stats(functions.QUEUE).ready == 2


@pytest.mark.slow
def test_restart_mid_load_loses_no_accepted_message(rabbit: RabbitmqBroker) -> None:
    total = 200
    functions.echo.send_many([("load", i) for i in range(total)])  # confirmed: RabbitMQ has them all
    seen = lambda: {call["args"][0] for _, call in functions.record.calls("load")}  # noqa: E731
    with running_worker(rabbit, threads=2):
        wait_until(lambda: len(seen()) >= 10, what="the worker to get going")
        try:
            rabbitmqctl("stop_app")
        finally:
            rabbitmqctl("start_app")
            wait_until(lambda: service_up(5672), timeout=60, what="RabbitMQ to come back")
        functions.echo.send("load", total)  # the publisher reconnects after the restart
        wait_until(lambda: len(seen()) == total + 1, timeout=120, what="every accepted message to run")
    assert seen() == set(range(total + 1))  # at-least-once: duplicates allowed, losses not


def test_bulk_publisher_survives_the_server_closing_its_connection(rabbit: RabbitmqBroker) -> None:
    functions.echo.send_many([("before",)])
    host, port = rabbit.connection._impl._transport._sock.getsockname()  # type: ignore[attr-defined]
    close_connection_from_server(f"{host}:{port} -> 127.0.0.1:5672")
    functions.echo.send_many([("after",), ("after",)])  # reconnects and publishes the batch
    assert rabbit.queue_stats(functions.QUEUE).ready == 3

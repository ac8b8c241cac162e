"""Nothing accepted is lost across a RabbitMQ restart under load: requests accepted while
RabbitMQ is down wait in the outbox and are relayed once it is back, each run exactly once."""

from __future__ import annotations

import pytest
from django.test import Client

from pygigo.adapters.base import build_broker
from pygigo.adapters.rabbitmq import RabbitmqBroker
from pygigo.django_site import outbox, store
from pygigo.django_site.models import Invocation, Status
from pygigo.platform import runtime
from tests.adapters.test_rabbitmq import rabbitmqctl
from tests.conftest import require_service, service_up, wait_until

from . import functions
from .test_redis import in_process_worker

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.mark.slow
def test_outbox_across_a_rabbitmq_restart_under_load() -> None:
    require_service("rabbitmq")
    broker = build_broker(URL, middleware=runtime.build_middleware())
    assert isinstance(broker, RabbitmqBroker)
    runtime.set_broker(broker)
    try:
        run_through_a_restart(broker)
    finally:
        broker.delete_queue(functions.QUEUE)
        runtime.reset()


def run_through_a_restart(broker: RabbitmqBroker) -> None:
    with in_process_worker(broker):
        ids: list[str] = []

        def post(n: int) -> None:
            response = Client().post("/fn/fe_echo", data=f"n={n}".encode(), content_type="text/plain")
            assert response.status_code == 202  # accepted, whether the broker is up or not
            ids.append(response.json()["id"])

        for n in range(30):  # load before the outage
            post(n)
        try:
            rabbitmqctl("stop_app")
            for n in range(30, 60):  # accepted during the outage: into the outbox
                post(n)
            waiting = Invocation.objects.filter(id__in=ids, relayed=False).count()
            assert waiting >= 30
            assert outbox.relay(min_age_s=0) == 0  # still down: nothing sent, nothing lost
        finally:
            rabbitmqctl("start_app")
            wait_until(lambda: service_up(5672), timeout=60, what="RabbitMQ to come back")
        wait_until(
            lambda: (
                outbox.relay(min_age_s=0) == 0
                and not Invocation.objects.filter(relayed=False, id__in=ids).exists()
            ),
            timeout=60,
            what="the outbox to drain",
        )
        finished = [store.wait_for(i, 60) for i in ids]
    assert len(set(ids)) == 60
    assert [row.status for row in finished if row] == [Status.SUCCEEDED] * 60
    assert all(row and row.attempts == 1 for row in finished)  # exactly once each

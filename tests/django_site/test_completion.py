"""Completion notices (pygigo.django_site.completion): a waiter is woken by the notice, not by
polling the row (the fallback poll is set to an hour), and falls back to polling the row when
the channel is down or breaks while it waits."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
import redis
from django.test import Client, override_settings
from django.utils import timezone

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site import completion, store
from pygigo.django_site.models import Invocation, Status
from tests.conftest import free_port, migrate_database, require_service, wait_until

from . import functions
from .conftest import PrivateRedis

HOUR = 3600
REDIS_URL = "redis://127.0.0.1:6379/15"


class Waiter(threading.Thread):
    """``store.wait_for`` in a thread of its own, as a waiting request would."""

    def __init__(self, invocation_id: Any) -> None:
        super().__init__(daemon=True)
        self.invocation_id = invocation_id
        self.answer: Invocation | None = None

    def run(self) -> None:
        self.answer = store.wait_for(self.invocation_id, 120)

    def result(self) -> Invocation | None:
        self.join(timeout=60)
        assert not self.is_alive(), "the waiter was not woken"
        return self.answer


def queued() -> Invocation:
    return Invocation.objects.create(function="fe_add", queue="q", kind="call")


def finish(invocation: Invocation) -> None:
    """Finish the row the way no worker would: without any notice."""
    Invocation.objects.filter(id=invocation.id).update(status=Status.SUCCEEDED, result=7)


def redis_subscribed(port: int) -> Callable[[Invocation], bool]:
    client = redis.Redis(port=port)
    return lambda row: bool(client.pubsub_numsub(completion.RedisChannel.name(row.id.hex))[0][1])


def socket_bound(row: Invocation) -> bool:
    channel = completion.channel()
    assert isinstance(channel, completion.SocketChannel)
    return (channel.directory / row.id.hex).exists()


@pytest.fixture(params=["sqlite-sockets", "redis"])
def channel_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[[Invocation], bool]]]:
    """A completion URL and how to tell that a waiter subscribed to a row's channel."""
    if request.param == "redis":
        require_service("redis")
        yield REDIS_URL, redis_subscribed(6379)
    else:
        yield "db://", socket_bound


def test_auto_picks_sockets_for_an_sqlite_file_then_the_brokers_redis(monkeypatch: Any) -> None:
    assert isinstance(completion.channel(), completion.SocketChannel)  # the test database is a file
    monkeypatch.setattr(completion, "_sqlite_file", lambda database: None)
    monkeypatch.setenv("PYGIGO_BROKER_URL", "redis://127.0.0.1:6379/3?namespace=x")
    picked = completion.channel()
    assert isinstance(picked, completion.RedisChannel) and picked.url == "redis://127.0.0.1:6379/3"
    monkeypatch.setenv("PYGIGO_BROKER_URL", "amqp://127.0.0.1")
    assert completion.channel() is None  # nothing to notify through: waiters poll


def test_a_waiter_is_woken_by_the_notice(channel_url: tuple[str, Callable[[Invocation], bool]]) -> None:
    url, subscribed = channel_url
    with override_settings(PYGIGO_COMPLETION_URL=url, PYGIGO_WAIT_FALLBACK_POLL_S=HOUR):
        row = queued()
        waiter = Waiter(row.id)
        waiter.start()
        wait_until(lambda: subscribed(row), what="the waiter to subscribe")
        finish(row)
        completion.announce(row.id.hex)  # what a worker does after its write
        answer = waiter.result()
    assert answer is not None and (answer.status, answer.result) == (Status.SUCCEEDED, 7)


@pytest.mark.parametrize("url", ["db://", REDIS_URL])
def test_prefer_wait_is_answered_through_the_notice(
    url: str, broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    if url.startswith("redis"):
        require_service("redis")
    subscribed = socket_bound if url == "db://" else redis_subscribed(6379)
    since = timezone.now()
    answers: dict[str, Any] = {}

    def running_and_waited_for() -> bool:
        rows = Invocation.objects.filter(function="fe_block", status=Status.RUNNING, created_at__gte=since)
        return any(subscribed(row) for row in rows)

    with override_settings(PYGIGO_COMPLETION_URL=url, PYGIGO_WAIT_FALLBACK_POLL_S=HOUR):
        request = threading.Thread(
            target=lambda: answers.update(r=Client().post("/fn/fe_block", headers={"Prefer": "wait=30"}))
        )
        request.start()
        # The function runs (held by the gate) while the request waits: only the worker's
        # notice can end the wait before the hour-long fallback poll, or its own 30 s.
        wait_until(running_and_waited_for, what="the request to wait for the running function")
        functions.gate.set()
        request.join(timeout=20)
        assert not request.is_alive(), "the request was not woken by the notice"
    assert answers["r"].status_code == 200 and answers["r"]["Preference-Applied"] == "wait=30"


def test_an_unreachable_channel_falls_back_to_polling() -> None:
    with override_settings(PYGIGO_COMPLETION_URL=f"redis://127.0.0.1:{free_port()}/0"):
        row = queued()
        waiter = Waiter(row.id)
        waiter.start()
        wait_until(lambda: not completion.channel().up(), what="the subscribe to fail")  # type: ignore[union-attr]
        finish(row)  # no notice: only polling can see it
        answer = waiter.result()
        completion.announce(row.id.hex)  # a sender skips a channel that is down, and never raises
    assert answer is not None and answer.status == Status.SUCCEEDED


def test_a_channel_that_breaks_mid_wait_falls_back_to_polling(private_redis: PrivateRedis) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    with override_settings(PYGIGO_COMPLETION_URL=url, PYGIGO_WAIT_FALLBACK_POLL_S=HOUR):
        row = queued()
        waiter = Waiter(row.id)
        waiter.start()
        wait_until(lambda: redis_subscribed(private_redis.port)(row), what="the waiter to subscribe")
        private_redis.stop()
        finish(row)
        answer = waiter.result()
    assert answer is not None and answer.status == Status.SUCCEEDED


def test_postgres_notices_reach_only_their_own_channel() -> None:
    migrate_database("postgres")
    channel = completion.PostgresChannel("postgres")
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    for _ in range(2):  # the second round reuses the pooled connection
        with channel.subscription(mine) as notice:
            assert notice is not None
            channel.publish(other)
            assert not notice.wait(0.3), "woken by another invocation's notice"
            channel.publish(mine)
            assert notice.wait(30)
        mine, other = other, mine

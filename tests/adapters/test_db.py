"""What is specific to db:// (the shared behaviour is in tests/conformance): URL checks,
transactional enqueue, leases (expiry, renewal, the ack guard), duplicate message ids, and the
admin's requeue action. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from pygigo.adapters.base import CapabilityError, ConfigurationError, build_broker
from pygigo.adapters.db import doorbell
from pygigo.adapters.db.broker import DatabaseBroker
from pygigo.adapters.db.consumer import DatabaseConsumer
from pygigo.adapters.db.models import Message, State
from pygigo.platform import guard, invocations, runtime
from pygigo.platform.envelope import Envelope
from tests.adapters import db_functions
from tests.conftest import migrate_database

QUEUE = db_functions.QUEUE
DATABASES = {"sqlite": "default", "postgres": "postgres"}


@pytest.fixture(params=list(DATABASES))
def alias(request: pytest.FixtureRequest) -> str:
    migrate_database(DATABASES[request.param])
    return DATABASES[request.param]


def make_broker(alias: str, query: str = "") -> DatabaseBroker:
    broker = build_broker(f"db://{alias}{query}")
    assert isinstance(broker, DatabaseBroker)
    broker.declare_queue(QUEUE)
    return broker


@pytest.fixture
def broker(alias: str) -> Iterator[DatabaseBroker]:
    built = make_broker(alias, "?lease_s=1")
    runtime.set_broker(built)
    built.flush(QUEUE)
    yield built
    try:
        built.flush(QUEUE)
    finally:
        runtime.reset()


def rows(alias: str) -> list[Message]:
    return list(Message.objects.using(alias).filter(queue_name=QUEUE).order_by("id"))


def send(n: int = 0) -> dramatiq.Message[None]:
    return db_functions.mark.send("/nonexistent", n)


# -- URLs and capabilities ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("db://nope", "No database alias 'nope'"),
        ("db://default/some/path", "takes a database alias, not a path"),
        ("db://?visibility=3", "Unknown option 'visibility'"),
        ("db://?lease_s=0", "must be positive"),
        ("db://?notify=maybe", "expected true or false"),
    ],
)
def test_bad_urls_are_refused_with_the_fix(url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        build_broker(url)


def test_url_options_and_capabilities() -> None:
    broker = build_broker("db://default?lease_s=7.5&poll_interval_ms=250&notify=false")
    assert isinstance(broker, DatabaseBroker)
    assert (broker.alias, broker.lease.total_seconds(), broker.poll_interval_s) == ("default", 7.5, 0.25)
    caps = broker.capabilities
    assert (caps.durable, caps.supports_priority, caps.text_bodies) == (True, True, True)


# -- Transactional enqueue ------------------------------------------------------------------


def test_enqueue_rolls_back_with_the_callers_transaction(broker: DatabaseBroker, alias: str) -> None:
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        send()
        assert broker.queue_stats(QUEUE).ready == 1  # visible to the transaction itself
        raise RuntimeError("the caller's work failed")
    assert broker.queue_stats(QUEUE).ready == 0
    with transaction.atomic(using=alias):
        send()
    assert broker.queue_stats(QUEUE).ready == 1


def test_postgres_doorbell_rings_on_commit_only(broker: DatabaseBroker, alias: str) -> None:
    if alias != "postgres":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    rang = threading.Event()
    listener = doorbell.Listener(alias, QUEUE, rang)
    listener.start()
    try:
        assert listener.listening.wait(10)
        with pytest.raises(RuntimeError), transaction.atomic(using=alias):
            send()
            raise RuntimeError
        assert not rang.wait(0.5), "a rolled-back enqueue rang the doorbell"
        send()
        assert rang.wait(5)
    finally:
        listener.stop()


def test_sqlite_socket_doorbell_wakes_a_consumer_of_another_broker() -> None:
    """Two brokers on one SQLite file stand for two processes: the sender's in-process doorbell
    cannot reach the other's consumer, whose poll interval is an hour."""
    migrate_database("default")
    consumer_side = make_broker("default", "?poll_interval_ms=3600000")
    sender = make_broker("default")
    consumer_side.flush(QUEUE)
    consumer = consumer_side.consume(QUEUE, prefetch=1, timeout=600_000)
    got: list[dramatiq.Message[None] | None] = []
    taker = threading.Thread(target=lambda: got.append(next(consumer)), daemon=True)
    try:
        listener = consumer._listener
        assert isinstance(listener, doorbell.SocketListener) and listener.listening.wait(10)
        taker.start()
        runtime.set_broker(sender)
        sent = send()
        taker.join(timeout=30)
        assert not taker.is_alive(), "the consumer was not woken"
        assert got[0] is not None and got[0].message_id == sent.message_id
    finally:
        runtime.reset()
        consumer.close()
        consumer_side.flush(QUEUE)
    assert not listener.path.exists()  # a closed consumer removes its socket


def test_sqlite_doorbell_removes_sockets_their_process_left_behind(tmp_path: Path) -> None:
    bell = doorbell.SocketDoorbell(str(tmp_path / "db.sqlite3"))
    bell.directory.mkdir(mode=0o700, exist_ok=True)
    stale = bell.directory / f"{doorbell.socket_name(QUEUE)}.dead"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
        gone.bind(str(stale))  # closed without unlinking, as by a killed process
    rang = threading.Event()
    listener = doorbell.SocketListener(bell, QUEUE, rang)
    listener.start()
    try:
        bell.ring(QUEUE)
        assert rang.wait(10)
        assert not stale.exists()
    finally:
        listener.stop()
        bell.directory.rmdir()


# -- Leases ---------------------------------------------------------------------------------


def test_expired_lease_is_delivered_again_and_the_late_ack_deletes_nothing(
    broker: DatabaseBroker, alias: str
) -> None:
    sent = send()
    dying = broker.consume(QUEUE, prefetch=1, timeout=2000)
    first = next(dying)
    assert first is not None and first.message_id == sent.message_id
    dying._heartbeat.stop()  # the worker "dies": nobody renews its lease (1 s)
    other = make_broker(alias, "?lease_s=1")
    rescuer = other.consume(QUEUE, prefetch=1, timeout=10_000)
    started = time.monotonic()
    try:
        second = next(rescuer)
        waited = time.monotonic() - started
        assert second is not None and second.message_id == sent.message_id
        assert 0.5 < waited < 5, waited
        (row,) = rows(alias)
        assert (row.deliveries, row.lease_owner) == (2, other.owner)
        # The first holder finishes late: its ack must not delete the redelivered row.
        dying.ack(first)
        dying.close()
        (row,) = rows(alias)
        assert row.state == State.CLAIMED
        rescuer.ack(second)
    finally:
        rescuer.close()
    assert rows(alias) == []


def test_running_message_keeps_its_lease(broker: DatabaseBroker, alias: str) -> None:
    send()
    holder = broker.consume(QUEUE, prefetch=1, timeout=2000)
    held = next(holder)
    assert held is not None
    other = make_broker(alias, "?lease_s=1").consume(QUEUE, prefetch=1, timeout=3000)
    try:
        # Three lease lengths pass; the heartbeat keeps renewing, so nobody else gets it.
        assert next(other) is None
        holder.ack(held)
        holder.close()
        assert rows(alias) == []
    finally:
        other.close()
        holder.close()


def test_one_message_id_may_be_queued_twice(broker: DatabaseBroker, alias: str) -> None:
    """A retry enqueues the same message id before the failed delivery is acked."""
    sent = send()
    consumer = broker.consume(QUEUE, prefetch=2, timeout=2000)
    try:
        first = next(consumer)
        assert first is not None
        broker.enqueue(sent)  # the "retry", while the first delivery is still held
        consumer.ack(first)
        second = next(consumer)
        assert second is not None and second.message_id == first.message_id
        assert isinstance(consumer, DatabaseConsumer)
        consumer.ack(second)
    finally:
        consumer.close()
    assert rows(alias) == []


def test_graceful_close_gives_back_unstarted_messages(broker: DatabaseBroker, alias: str) -> None:
    for n in range(3):
        send(n)
    consumer = broker.consume(QUEUE, prefetch=3, timeout=2000)
    taken = next(consumer)
    assert taken is not None
    consumer.requeue([taken])
    consumer.close()  # the two still buffered go back too
    assert [(r.state, r.deliveries) for r in rows(alias)] == [(State.READY, 0)] * 3


# -- Batches ---------------------------------------------------------------------------------


def test_a_claim_takes_a_batch_up_to_the_prefetch_in_queue_order(broker: DatabaseBroker, alias: str) -> None:
    low = [send(n).message_id for n in range(3)]
    high = [
        db_functions.mark.send_with_options(args=("/nonexistent", n), broker_priority=5).message_id
        for n in (3, 4)
    ]
    consumer = broker.consume(QUEUE, prefetch=4, timeout=300)
    try:
        got = [next(consumer) for _ in range(4)]
        # One claim took the prefetch's worth, highest priority first, then in sending order.
        assert [m.message_id for m in got if m is not None] == [*high, *low[:2]]
        assert sorted(r.state for r in rows(alias)) == [State.CLAIMED] * 4 + [State.READY]
        # Less than half the prefetch free: no claim, but the ack is written on its own.
        consumer.ack(got[0])
        assert next(consumer) is None
        assert sorted(r.state for r in rows(alias)) == [State.CLAIMED] * 3 + [State.READY]
        # Half free: the next claim carries the queued ack.
        consumer.ack(got[1])
        last = next(consumer)
        assert last is not None and last.message_id == low[2]
        assert [r.state for r in rows(alias)] == [State.CLAIMED] * 3
        for message in [*got[2:], last]:
            consumer.ack(message)
    finally:
        consumer.close()
    assert rows(alias) == []


def test_outcomes_of_a_batch_are_written_together_at_close(broker: DatabaseBroker, alias: str) -> None:
    for n in range(4):
        send(n)
    consumer = broker.consume(QUEUE, prefetch=4, timeout=2000)
    got = [next(consumer) for _ in range(4)]
    assert all(m is not None for m in got)
    # Two nacks share an error (one statement), one has its own; quotes and SQL-ish text survive.
    failures = [
        ValueError("it's 'quoted'; -- not SQL"),
        ValueError("it's 'quoted'; -- not SQL"),
        KeyError("k"),
    ]
    for message, exc in zip(got[1:], failures, strict=True):
        message.stuff_exception(exc)
        message.fail()
        consumer.nack(message)
    consumer.ack(got[0])
    consumer.close()
    left = rows(alias)
    assert [(r.message_id, r.state) for r in left] == [(m.message_id, State.DEAD) for m in got[1:]]
    assert [r.error for r in left] == [f"{type(exc).__name__}: {exc}" for exc in failures]


def test_only_databases_with_update_returning_are_accepted() -> None:
    from types import SimpleNamespace

    from pygigo.adapters.db.statements import supported

    def connection(vendor: str, returning: bool) -> Any:
        return SimpleNamespace(
            vendor=vendor, features=SimpleNamespace(can_return_columns_from_insert=returning)
        )

    assert supported(connection("postgresql", True))
    assert supported(connection("sqlite", True))
    assert not supported(connection("sqlite", False))  # SQLite before 3.35
    assert not supported(connection("mysql", True))


# -- Dead letters in the admin ----------------------------------------------------------------


def test_admin_requeues_a_dead_letter_with_fresh_retries(broker: DatabaseBroker, alias: str) -> None:
    if alias != "default":
        pytest.skip("the admin reads the default database")
    sent = db_functions.mark.message_with_options(args=("/nonexistent", 0), retries=5)
    guard.sign(sent)  # as a worker's broker would (this test's broker has no guard)
    broker.enqueue(sent)
    consumer = broker.consume(QUEUE, prefetch=1, timeout=2000)
    message = next(consumer)
    assert message is not None
    message.stuff_exception(ValueError("boom"))
    message.fail()
    consumer.nack(message)
    consumer.close()
    (row,) = rows(alias)
    assert (row.state, row.error) == (State.DEAD, "ValueError: boom")
    assert broker.queue_stats(QUEUE).dead == 1

    user = get_user_model().objects.create_superuser(f"admin-{time.monotonic_ns()}", "a@example.com", "pw")
    client = Client()
    client.force_login(user)
    changelist = "/admin/pygigo_db/message/"
    page = client.get(changelist, {"state__exact": "dead"})
    assert page.status_code == 200
    assert b"ValueError: boom" in page.content
    response = client.post(changelist, {"action": "requeue", "_selected_action": [row.pk]})
    assert response.status_code == 302
    (row,) = rows(alias)
    assert (row.state, row.error, row.dead_at, row.deliveries) == (State.READY, "", None, 0)
    assert json.loads(row.body)["options"]["retries"] == 0
    stats = broker.queue_stats(QUEUE)
    assert (stats.ready, stats.dead) == (1, 0)
    # Signed again with a fresh expiry: a worker's guard lets it through.
    consumer = broker.consume(QUEUE, prefetch=1, timeout=2000)
    requeued = next(consumer)
    consumer.close()
    assert requeued is not None and requeued.message_id == message.message_id
    guard.check(requeued)


def test_admin_leaves_a_dead_letter_that_no_longer_verifies(broker: DatabaseBroker, alias: str) -> None:
    """Requeueing signs the message again, so it must not bless one altered at rest (or kept
    with its secrets masked): that one stays dead, and the admin says why."""
    if alias != "default":
        pytest.skip("the admin reads the default database")
    sent = db_functions.mark.message("/nonexistent", 0)
    guard.sign(sent)
    broker.enqueue(sent)
    consumer = broker.consume(QUEUE, prefetch=1, timeout=2000)
    message = next(consumer)
    assert message is not None
    message.fail()
    consumer.nack(message)
    consumer.close()
    (row,) = rows(alias)
    body = json.loads(row.body)
    body["args"] = ["/etc", 1]
    Message.objects.filter(pk=row.pk).update(body=json.dumps(body))

    user = get_user_model().objects.create_superuser(f"admin-{time.monotonic_ns()}", "a@example.com", "pw")
    client = Client()
    client.force_login(user)
    response = client.post(
        "/admin/pygigo_db/message/", {"action": "requeue", "_selected_action": [row.pk]}, follow=True
    )
    assert b"signature no longer verifies" in response.content
    (row,) = rows(alias)
    assert row.state == State.DEAD


def test_dead_letters_and_admin_pages_keep_no_secret(broker: DatabaseBroker, alias: str) -> None:
    """A forwarded cookie and a sensitive argument travel to the worker, but the dead letter
    kept for days holds neither, nor does its error text; the admin masks queued rows too."""
    cookie = "db-cookie-secret-1"
    envelope = Envelope(
        function=db_functions.mark.name,
        kind="http",
        method="POST",
        path="/x",
        headers=(("Cookie", f"sessionid={cookie}"), ("Accept", "text/plain")),
    )
    broker.enqueue(invocations.envelope_message(envelope, db_functions.mark))
    db_functions.login.send("ann", "db-password-secret")
    consumer = broker.consume(QUEUE, prefetch=1, timeout=2000)
    message = next(consumer)
    assert message is not None and cookie in message.args[0]  # the worker gets it
    message.stuff_exception(ValueError(f"session {cookie} expired"))
    message.fail()
    consumer.nack(message)
    consumer.close()

    dead, queued = rows(alias)
    assert dead.state == State.DEAD and queued.state == State.READY
    assert dead.error == "ValueError: session *** expired"
    kept = json.loads(json.loads(dead.body)["args"][0])
    assert kept["id"] == envelope.id and ["Cookie", "***"] in kept["headers"]
    assert cookie not in dead.body
    assert "db-password-secret" in queued.body  # still to run: it needs the password

    if alias != "default":
        return  # the admin reads the default database
    user = get_user_model().objects.create_superuser(f"admin-{time.monotonic_ns()}", "a@example.com", "pw")
    client = Client()
    client.force_login(user)
    for row in (dead, queued):
        page = client.get(f"/admin/pygigo_db/message/{row.pk}/change/")
        assert page.status_code == 200
        assert cookie not in page.content.decode() and "db-password-secret" not in page.content.decode()
        assert "***" in page.content.decode()
    listing = client.get("/admin/pygigo_db/message/").content.decode()
    assert "session *** expired" in listing and cookie not in listing


@pytest.mark.parametrize("database", ["fresh.sqlite3", "missing-folder/fresh.sqlite3"])
def test_worker_and_producer_on_an_unmigrated_database_say_run_migrate(tmp_path: Path, database: str) -> None:
    """Not migrated, or its folder does not exist: "run `pygigo migrate`", never "is the server
    running?" (which is what a missing SQLite folder used to produce)."""
    env = dict(
        os.environ,
        PYGIGO_BROKER_URL="db://",
        PYGIGO_SQLITE_PATH=str(tmp_path / database),
        PYGIGO_SIGNING_KEYS="a-key-of-this-test-only",  # DEBUG is off: the public default is refused
    )
    env.pop("DJANGO_SETTINGS_MODULE")  # a plain process: Pygigo's default site
    worker = subprocess.run(
        [sys.executable, "-m", "pygigo", "worker", "tests.adapters.db_functions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 2
    assert "`pygigo migrate` (or `manage.py migrate`)" in worker.stderr
    assert "Is the server running" not in worker.stderr
    producer = subprocess.run(
        [sys.executable, "-c", 'from tests.adapters.db_functions import mark; mark.send("/tmp", 1)'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert producer.returncode == 1
    last_line = producer.stderr.strip().splitlines()[-1]
    assert last_line.startswith("pygigo.adapters.errors.BrokerUnavailable: The db:// broker's database")
    assert last_line.endswith("Create and migrate it: `pygigo migrate` (or `manage.py migrate`).")


def test_maintenance_requeues_expired_leases_and_prunes_old_dead_letters() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from pygigo.adapters.db import maintenance
    from pygigo.adapters.db.models import Message, State

    migrate_database("default")
    past = timezone.now() - timedelta(days=8)
    common = {"queue_name": "maint", "actor_name": "a", "body": "{}"}
    expired = Message.objects.create(**common, message_id="m1", state=State.CLAIMED, lease_expires_at=past)
    live = Message.objects.create(
        **common, message_id="m2", state=State.CLAIMED, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    old_dead = Message.objects.create(**common, message_id="m3", state=State.DEAD, dead_at=past)
    new_dead = Message.objects.create(**common, message_id="m4", state=State.DEAD, dead_at=timezone.now())
    try:
        assert maintenance.requeue_expired() == 1
        assert Message.objects.get(pk=expired.pk).state == State.READY
        assert Message.objects.get(pk=live.pk).state == State.CLAIMED
        assert maintenance.prune_dead_letters() == 1
        assert not Message.objects.filter(pk=old_dead.pk).exists()
        assert Message.objects.filter(pk=new_dead.pk).exists()
    finally:
        Message.objects.filter(queue_name="maint").delete()


class _BinaryEncoder(dramatiq.encoder.JSONEncoder):
    """A Dramatiq encoder whose bytes are not UTF-8 (as a msgpack or pickle encoder's are)."""

    def encode(self, data: dramatiq.encoder.MessageData) -> bytes:
        return b"\xff" + super().encode(data)


def test_a_binary_encoder_is_refused_with_capability_error(broker: DatabaseBroker) -> None:
    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(_BinaryEncoder())
    try:
        with pytest.raises(CapabilityError, match="JSON encoder"):
            db_functions.mark.send("unused", 1)
    finally:
        dramatiq.set_encoder(previous)

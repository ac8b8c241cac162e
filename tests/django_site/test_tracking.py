"""Invocation tracking on a worker: life cycle, retries, refusal of bad envelopes, pruning."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta

import dramatiq
import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site import heartbeat, store, transitions
from pygigo.django_site.models import Invocation, Status
from pygigo.platform import invocations
from pygigo.platform.envelope import Envelope, seal
from pygigo.platform.invocations import InvocationFailed, InvocationTimeout
from tests.conftest import wait_until

from . import functions


def test_invoke_records_the_life_cycle_and_returns_the_result(worker: dramatiq.Worker) -> None:
    assert functions.fe_add.invoke(2, 3, wait=10) == 5
    row = Invocation.objects.filter(function="fe_add").order_by("-created_at").first()
    assert row is not None
    assert (row.status, row.attempts, row.result, row.kind) == (Status.SUCCEEDED, 1, 5, "call")
    assert row.started_at is not None and row.finished_at is not None
    assert row.relayed and row.wire == ""


def test_retries_are_recorded_then_dead(worker: dramatiq.Worker) -> None:
    with pytest.raises(InvocationFailed) as info:
        functions.fe_flaky.invoke("k1", wait=10)
    row = Invocation.objects.get(id=info.value.invocation_id)
    assert row.status == Status.DEAD
    assert row.attempts == 3  # one run + max_retries=2
    assert "RuntimeError: always fails" in row.error
    assert functions.calls == ["k1", "k1", "k1"]


def test_failure_without_retries_is_failed_not_dead(worker: dramatiq.Worker) -> None:
    with pytest.raises(InvocationFailed) as info:
        functions.fe_fails_once.invoke("x", wait=10)
    row = Invocation.objects.get(id=info.value.invocation_id)
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert row.error.startswith("ValueError")


def test_invoke_without_a_worker_times_out_and_stays_queued(broker: PygigoBroker) -> None:
    with pytest.raises(InvocationTimeout) as info:
        functions.fe_add.invoke(1, 1, wait=0.05)
    assert Invocation.objects.get(id=info.value.invocation_id).status == Status.QUEUED


def _wait_dead(broker: PygigoBroker, count: int) -> None:
    deadline = time.monotonic() + 10
    while broker.queue_stats(functions.QUEUE).dead < count:
        assert time.monotonic() < deadline, "message was not dead-lettered"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["forged", "unsigned", "wrong-key"])
def test_bad_envelopes_are_dead_lettered_and_never_run(
    broker: PygigoBroker, worker: dramatiq.Worker, how: str
) -> None:
    envelope = Envelope(function="fe_count", kind="call", args=("evil",))
    sealed = seal(envelope, ["the-real-key-is-not-this"] if how == "wrong-key" else store_keys())
    if how == "forged":
        sealed = sealed.replace(b'"evil"', b'"EVIL"')
    elif how == "unsigned":
        sealed = envelope.encode()
    message = invocations.wire_message(sealed.decode(), envelope.id, functions.QUEUE, {})
    functions.fe_count.actor  # noqa: B018 - declares the queue
    broker.enqueue(message)
    _wait_dead(broker, 1)
    functions.fe_count.send("after")  # the worker is still healthy
    deadline = time.monotonic() + 10
    while "after" not in functions.calls:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "evil" not in functions.calls and "EVIL" not in functions.calls


def store_keys() -> list[str]:
    from pygigo.platform import settings

    return settings.signing_keys()


def test_expired_envelope_is_dead_and_recorded(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    envelope = Envelope(function="fe_count", kind="call", args=("late",), deadline=time.time() - 1)
    invocation, created = store.submit(envelope, functions.fe_count)
    assert created
    done = store.wait_for(invocation.id, 10)
    assert done is not None and done.status == Status.DEAD
    assert "expired" in done.error
    assert "late" not in functions.calls


def test_duplicate_delivery_runs_once(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    envelope = Envelope(function="fe_count", kind="call", args=("dup",))
    invocation, _ = store.submit(envelope, functions.fe_count)
    done = store.wait_for(invocation.id, 10)
    assert done is not None and done.status == Status.SUCCEEDED
    # The outbox relay (or a redelivery) sends the very same envelope again.
    broker.enqueue(invocations.envelope_message(envelope, functions.fe_count))
    functions.fe_count.send("marker")
    deadline = time.monotonic() + 10
    while "marker" not in functions.calls:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    worker.join()
    assert functions.calls.count("dup") == 1
    assert Invocation.objects.get(id=invocation.id).attempts == 1


def test_cancelled_before_start_never_runs(broker: PygigoBroker) -> None:
    envelope = Envelope(function="fe_count", kind="call", args=("cancel-me",))
    invocation, _ = store.submit(envelope, functions.fe_count)
    assert store.cancel(invocation.id)
    assert not store.cancel(invocation.id)  # already cancelled: not cancellable again
    running = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    running.start()
    try:
        running.join()
    finally:
        running.stop()
    assert "cancel-me" not in functions.calls
    assert Invocation.objects.get(id=invocation.id).status == Status.CANCELLED


def test_prune_deletes_only_old_finished_invocations(broker: PygigoBroker) -> None:
    old = timezone.now() - timedelta(days=30)
    finished = Invocation.objects.create(function="p", queue="q", status=Status.SUCCEEDED, finished_at=old)
    pending = Invocation.objects.create(function="p", queue="q", status=Status.QUEUED, created_at=old)
    recent = Invocation.objects.create(
        function="p", queue="q", status=Status.FAILED, finished_at=timezone.now()
    )
    assert store.prune(ttl_s=24 * 3600) >= 1
    assert not Invocation.objects.filter(id=finished.id).exists()
    assert Invocation.objects.filter(id=pending.id).exists()
    assert Invocation.objects.filter(id=recent.id).exists()


def test_plain_send_is_untracked(worker: dramatiq.Worker) -> None:
    before = Invocation.objects.count()
    functions.fe_count.send("plain")
    deadline = time.monotonic() + 10
    while "plain" not in functions.calls:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert Invocation.objects.count() == before


def _run_once(broker: PygigoBroker) -> None:
    running = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    running.start()
    try:
        running.join()
    finally:
        running.stop()  # graceful: a delayed re-check goes back to the broker's delay queue


def _orphan(key: str, **row: object) -> Invocation:
    """An invocation whose row says it is running somewhere (as ``row`` describes), and its
    message back in the broker: what a redelivery after a worker's death looks like."""
    envelope = Envelope(function="fe_count", kind="call", args=(key,))
    invocation, _ = store.submit(envelope, functions.fe_count)
    Invocation.objects.filter(id=invocation.id).update(started_at=timezone.now(), **row)
    return invocation


@override_settings(PYGIGO_HEARTBEAT_S=60)  # the re-check comes back long after the test
def test_redelivery_while_the_holder_is_alive_is_checked_again_not_dropped(
    broker: PygigoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Its holder's heartbeat is fresh: a duplicate delivery must not run it a second time, but
    must not be acked away either (the holder may be about to die)."""
    invocation = _orphan(
        "alive", status=Status.RUNNING, attempts=1, holder="w/1/x", heartbeat_at=timezone.now()
    )
    running = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    running.start()
    try:
        wait_until(lambda: "running elsewhere" in caplog.text, what="the delivery to be looked at")
    finally:
        running.stop()  # graceful: the delayed re-check goes back to the broker's delay queue
    assert "alive" not in functions.calls
    stats = broker.queue_stats(functions.QUEUE)
    assert (stats.ready, stats.delayed, stats.dead) == (0, 1, 0)
    assert Invocation.objects.get(id=invocation.id).status == Status.RUNNING


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "update-then-read"])
def test_redelivery_after_the_holder_died_takes_over(
    broker: PygigoBroker, returning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without UPDATE … RETURNING (MySQL, MariaDB) the start reads the row in a second query.
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", returning)
    stale = timezone.now() - heartbeat.stale_after() - timedelta(seconds=1)
    invocation = _orphan("orphan", status=Status.RUNNING, attempts=1, holder="w/1/x", heartbeat_at=stale)
    _run_once(broker)
    assert functions.calls == ["orphan"]
    row = Invocation.objects.get(id=invocation.id)
    assert (row.status, row.attempts, row.holder != "w/1/x") == (Status.SUCCEEDED, 2, True)
    assert row.as_json()["heartbeat_at"] is not None


def test_redelivery_of_a_finished_invocation_is_acked_without_running(broker: PygigoBroker) -> None:
    invocation = _orphan("done", status=Status.SUCCEEDED, attempts=1, result=1)
    _run_once(broker)
    assert "done" not in functions.calls
    stats = broker.queue_stats(functions.QUEUE)
    assert (stats.ready, stats.delayed, stats.dead) == (0, 0, 0)
    assert Invocation.objects.get(id=invocation.id).status == Status.SUCCEEDED


def test_worker_died_on_the_last_allowed_run_dead_letters_it(broker: PygigoBroker) -> None:
    stale = timezone.now() - heartbeat.stale_after() - timedelta(seconds=1)
    # fe_count allows 3 retries: 4 runs, all of which died with their worker.
    invocation = _orphan("poison", status=Status.RUNNING, attempts=4, holder="w/1/x", heartbeat_at=stale)
    _run_once(broker)
    assert "poison" not in functions.calls
    assert broker.queue_stats(functions.QUEUE).dead == 1
    row = Invocation.objects.get(id=invocation.id)
    assert (row.status, row.error) == (Status.DEAD, "the worker died while running it")


def test_a_holder_that_was_taken_over_records_nothing(worker: dramatiq.Worker) -> None:
    """Fencing: the outcome of a run that lost its hold (its heartbeat went stale and another
    delivery took over) must not overwrite the new holder's row."""
    invocation, _ = store.submit(Envelope(function="fe_hold", kind="call", args=("held",)), functions.fe_hold)
    wait_until(lambda: "held" in functions.calls, what="the body to start")
    row = Invocation.objects.get(id=invocation.id)
    assert row.status == Status.RUNNING and row.holder and row.heartbeat_at is not None
    Invocation.objects.filter(id=invocation.id).update(holder="another/2/y")
    functions.gate.set()
    worker.join()
    row = Invocation.objects.get(id=invocation.id)
    assert (row.status, row.holder, row.result) == (Status.RUNNING, "another/2/y", None)


def test_on_sqlite_a_write_lock_held_elsewhere_is_waited_for_in_fine_steps(
    broker: PygigoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock a worker's start meets is most often the accepting request's, held while it
    publishes: the write polls for it every LOCK_POLL_S instead of SQLite's busy handler
    (1, 2, 5, 10 … ms), then succeeds, and the connection keeps its busy timeout."""
    if connection.vendor != "sqlite":
        pytest.skip("the default database is not SQLite")
    invocation = _orphan("locked", status=Status.RUNNING, attempts=1, holder="w/1/x")
    held, polled = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        polled.wait(10)  # released once the writer has met the lock and is polling for it
        other.execute("COMMIT")
        other.close()

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        busy_timeout = cursor.fetchone()[0]
    polls: list[float] = []
    real_sleep = transitions.sleep

    def counted_sleep(seconds: float) -> None:
        polls.append(seconds)
        polled.set()
        real_sleep(seconds)

    monkeypatch.setattr(transitions, "sleep", counted_sleep)
    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    held.wait(5)
    written = transitions.record("default", invocation.id.hex, "w/1/x", status=Status.SUCCEEDED)
    holder.join()
    assert written and Invocation.objects.get(id=invocation.id).status == Status.SUCCEEDED
    assert polls and set(polls) == {transitions.LOCK_POLL_S}
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == busy_timeout > 0

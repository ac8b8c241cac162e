"""The conformance suite: written once, run against every adapter (see conftest.ADAPTERS)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dramatiq
import pytest

from pygigo.adapters.base import PygigoBroker
from tests.conftest import wait_until

from . import functions
from .conftest import AdapterCase, require
from .conftest import running_worker as worker_on

record = functions.record


def running_worker(
    broker: PygigoBroker, *, threads: int = 4, queues: set[str] | None = None
) -> contextlib.AbstractContextManager[dramatiq.Worker]:
    """A worker on the conformance functions' queues only (see ``worker_on``)."""
    return worker_on(broker, threads=threads, queues=queues or {functions.QUEUE, functions.SLOW_QUEUE})


def test_send_and_consume_round_trips_json_arguments(broker: PygigoBroker) -> None:
    payload = {"text": "héllo ✓", "n": 3, "x": 1.5, "none": None, "list": [1, [2, {"a": True}]]}
    with running_worker(broker):
        functions.echo.send("rt", 1, "two", payload, flag=False, nested={"k": ["v"]})
        ((_, got),) = record.wait_for("rt", 1)
    assert got == {"args": [1, "two", payload], "kwargs": {"flag": False, "nested": {"k": ["v"]}}}


def test_delayed_message_does_not_run_before_its_time(broker: PygigoBroker) -> None:
    with running_worker(broker):
        sent = time.time()
        functions.echo.send_with_options(args=("delayed",), delay_s=1.0)
        functions.echo.send("now")
        ((ran_now, _),) = record.wait_for("now", 1)
        assert record.calls("delayed") == []
        ((ran_at, _),) = record.wait_for("delayed", 1, timeout=10)
    assert ran_at - sent >= 0.95
    assert ran_now < ran_at


def test_retries_with_backoff_then_dead_letter(broker: PygigoBroker) -> None:
    with running_worker(broker):
        functions.always_fails.send("fails")
        calls = record.wait_for("fails", 3)
        wait_until(
            lambda: broker.queue_stats(functions.QUEUE).dead == 1, what="the message in the dead letters"
        )
    times = [at for at, _ in calls]
    assert len(calls) == 3  # one run + max_retries=2
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    assert broker.queue_stats(functions.QUEUE).ready == 0


def test_unknown_actor_is_dead_lettered_not_a_crash(broker: PygigoBroker) -> None:
    stranger = dramatiq.Message(
        queue_name=functions.QUEUE, actor_name="no_such_function", args=(), kwargs={}, options={}
    )
    with running_worker(broker):
        broker.enqueue(stranger)
        wait_until(
            lambda: broker.queue_stats(functions.QUEUE).dead == 1, what="the unknown message dead-lettered"
        )
        functions.echo.send("after")
        record.wait_for("after", 1)


def test_a_pipeline_passes_results_through_signed_steps(broker: PygigoBroker) -> None:
    """Each step is enqueued by the worker that ran the one before, with that step's result
    appended: the worker signs what it derives, so every step runs."""
    with running_worker(broker):
        dramatiq.pipeline(
            [functions.add_one.message(1), functions.add_one.message(), functions.echo.message("piped")]
        ).run()
        ((_, value),) = functions.record.wait_for("piped", 1)
    assert value == {"args": [3], "kwargs": {}}


def test_a_pipeline_result_is_stored(broker: PygigoBroker) -> None:
    with running_worker(broker):
        steps = dramatiq.pipeline([functions.add_one.message(1), functions.square.message()]).run()
        assert steps.get_result(block=True, timeout=15_000) == 4


def test_a_group_stores_results_and_fires_its_completion_callback_once(broker: PygigoBroker) -> None:
    with running_worker(broker):
        members = dramatiq.group([functions.square.message(n) for n in range(5)])
        members.add_completion_callback(functions.echo.message("group-done"))
        members.run()
        results = list(members.get_results(block=True, timeout=15_000))
        record.wait_for("group-done", 1)
        # Enqueued behind the callback: once it has run, a second callback would have too.
        functions.echo.send("after-group")
        record.wait_for("after-group", 1)
    assert results == [0, 1, 4, 9, 16]
    assert len(record.calls("group-done")) == 1


def test_adapter_declares_its_pinned_capabilities(broker: PygigoBroker, case: AdapterCase) -> None:
    assert broker.capabilities == case.capabilities


def test_priority_runs_higher_first(broker: PygigoBroker, case: AdapterCase) -> None:
    require(case, "supports_priority")
    for _ in range(5):
        functions.low.send("order")
    for _ in range(5):
        functions.high.send("order")
    with running_worker(broker, threads=1):
        calls = record.wait_for("order", 10)
    order = [value for _, value in calls]
    assert order[:5] == ["high"] * 5, order


def test_graceful_shutdown_requeues_prefetched_and_delayed(broker: PygigoBroker) -> None:
    count, delayed = 6, 3
    for _ in range(count):
        functions.slow.send("slow", 0.3)
    for _ in range(delayed):
        functions.slow.send_with_options(args=("later", 0.0), delay_s=3600)
    with running_worker(broker, threads=1, queues={functions.SLOW_QUEUE, f"{functions.SLOW_QUEUE}.DQ"}):
        record.wait_for("slow:started", 1)
    finished = len(record.calls("slow"))
    assert finished < count, "the worker should have stopped before finishing everything"
    stats = broker.queue_stats(functions.SLOW_QUEUE)
    assert stats.ready == count - finished
    assert stats.delayed == delayed
    with running_worker(broker, threads=4):
        record.wait_for("slow", count)


def test_flush_empties_ready_and_delayed(broker: PygigoBroker) -> None:
    functions.echo.send("flushed")
    functions.echo.send_with_options(args=("flushed",), delay_s=3600)
    broker.flush(functions.QUEUE)
    stats = broker.queue_stats(functions.QUEUE)
    assert (stats.ready, stats.delayed) == (0, 0)


def test_queue_depth_counts_ready_and_delayed(broker: PygigoBroker) -> None:
    for _ in range(3):
        functions.echo.send("depth")
    for _ in range(2):
        functions.echo.send_with_options(args=("depth",), delay_s=3600)
    stats = broker.queue_stats(functions.QUEUE)
    assert (stats.ready, stats.delayed, stats.dead) == (3, 2, 0)


def test_oldest_ready_age_grows_while_a_message_waits_and_reading_it_takes_nothing(
    broker: PygigoBroker,
) -> None:
    empty = broker.queue_stats(functions.QUEUE)
    if broker.scheme == "sqs":  # CloudWatch-only on SQS (see SQSBroker.queue_stats)
        assert empty.oldest_ready_age_s is None
        return
    assert empty.oldest_ready_age_s == 0.0
    before = time.time()
    functions.echo.send("aged")
    wait_until(
        lambda: (broker.queue_stats(functions.QUEUE).oldest_ready_age_s or 0.0) >= 0.3,
        what="the waiting message's age to grow",
    )
    stats = broker.queue_stats(functions.QUEUE)
    # Bounded by the time since it was sent (+1 ms: message timestamps are whole ms).
    assert 0.3 <= (stats.oldest_ready_age_s or 0.0) <= time.time() - before + 0.001
    assert stats.ready == 1  # peeking (RabbitMQ) put it back
    with running_worker(broker):
        record.wait_for("aged", 1)
    assert broker.queue_stats(functions.QUEUE).oldest_ready_age_s == 0.0


@pytest.mark.slow
def test_worker_killed_mid_task_gets_the_message_again(
    broker: PygigoBroker, case: AdapterCase, worker_env: dict[str, str], tmp_path: Path
) -> None:
    require(case, "durable")
    functions.hold.send(str(tmp_path))
    command = [sys.executable, "-m", "pygigo", "worker", "tests.conformance.functions", "-p", "1", "-t", "2"]

    def started() -> list[Path]:
        return sorted(tmp_path.glob("started-*"))

    first = subprocess.Popen(command, env=worker_env, start_new_session=True)
    try:
        wait_until(lambda: len(started()) == 1, timeout=30, what="the first worker to start the task")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    second = subprocess.Popen(command, env=worker_env, start_new_session=True)
    try:
        wait_until(lambda: len(started()) >= 2, timeout=30, what="the message to be delivered again")
        (tmp_path / "release").touch()
        wait_until(lambda: any(tmp_path.glob("done-*")), timeout=30, what="the second attempt to finish")
    finally:
        second.terminate()  # graceful: the main process forwards it to its workers
        try:
            second.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(second.pid, signal.SIGKILL)
    assert second.returncode == 0


def test_send_many_enqueues_every_call(broker: PygigoBroker) -> None:
    messages = functions.echo.send_many([("bulk", i) for i in range(20)] + [{"key": "bulk", "n": 20}])
    assert len(messages) == 21
    assert broker.queue_stats(functions.QUEUE).ready == 21
    with running_worker(broker):
        calls = record.wait_for("bulk", 21)
    seen = sorted(
        [c["args"][0] for _, c in calls if c["args"]] + [c["kwargs"]["n"] for _, c in calls if c["kwargs"]]
    )
    assert seen == list(range(21))

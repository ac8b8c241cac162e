"""Django's expectations of a task backend (the backend-agnostic cases of Django's
``tests/tasks/``), on every broker: each test runs once per adapter (see conftest)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from django.db import transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site.tasks import PygigoBackend
from tests.conftest import wait_until

from . import tasks
from .compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus, signals, task_backends


def finished(result: Any, timeout: float = 20.0) -> Any:
    """Refresh ``result`` from its invocation row until the task finished."""

    def done() -> bool:
        result.refresh()
        return bool(result.is_finished)

    wait_until(done, timeout, what=f"task {result.task.name} {result.id} to finish")
    return result


def test_enqueue_runs_the_task_and_records_its_result(worker: dramatiq.Worker) -> None:
    for task in (tasks.noop_task, tasks.noop_task_async):
        result = task.enqueue(1, two=3)
        assert result.status == TaskResultStatus.READY
        assert result.enqueued_at is not None and result.started_at is None
        finished(result)
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.started_at is not None and result.last_attempted_at is not None
        assert result.finished_at >= result.started_at >= result.enqueued_at
        assert result.return_value is None
        assert result.task == task
        assert (result.args, result.kwargs) == ([1], {"two": 3})
        assert result.attempts == 1
        assert result.errors == []


def test_a_run_writes_its_row_twice_and_never_reads_it(
    worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start's UPDATE … RETURNING gives the run what its TaskResult needs (attempt count,
    enqueue time, last error): on the worker, two statements per run, no SELECT."""
    statements: list[tuple[str, Any]] = []
    original = CursorWrapper._execute

    def recording(self: CursorWrapper, sql: str, params: Any, *args: Any) -> Any:
        done = original(self, sql, params, *args)  # an attempt that met SQLite's lock is retried
        if type(threading.current_thread()).__name__ == "WorkerThread" and '"pygigo_invocation"' in sql:
            statements.append((sql.split()[0].upper(), params))
        return done

    monkeypatch.setattr(CursorWrapper, "_execute", recording)
    result = finished(tasks.check_context.enqueue(attempt=1))
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 1
    # This task's statements only: a late redelivery of an earlier test's message may run too.
    ids = {uuid.UUID(result.id), uuid.UUID(result.id).hex}
    mine = [
        verb
        for verb, params in statements
        if any(isinstance(p, str | uuid.UUID) and p in ids for p in params or ())
    ]
    assert Counter(mine) == {"UPDATE": 2}


def test_aenqueue_and_aget_result(worker: dramatiq.Worker) -> None:
    async def enqueue_and_read() -> tuple[Any, Any]:
        result = await tasks.calculate_meaning_of_life.aenqueue()
        await asyncio.to_thread(finished, result)
        return result, await task_backends["default"].aget_result(result.id)

    result, fetched = asyncio.run(enqueue_and_read())
    assert result.return_value == fetched.return_value == 42
    assert fetched.id == result.id and fetched.status == TaskResultStatus.SUCCESSFUL


def test_get_result_reads_the_invocation_row(worker: dramatiq.Worker) -> None:
    result = finished(tasks.echo.enqueue("a", [1, 2], n={"k": None}))
    fetched = tasks.echo.get_result(result.id)
    assert fetched.return_value == {"args": ["a", [1, 2]], "kwargs": {"n": {"k": None}}}
    assert (fetched.args, fetched.kwargs) == (["a", [1, 2]], {"n": {"k": None}})
    assert fetched.enqueued_at == result.enqueued_at and fetched.finished_at == result.finished_at


def test_a_failing_task_fails_with_its_exception_and_traceback(worker: dramatiq.Worker) -> None:
    result = finished(tasks.failing_task_value_error.enqueue())
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018
    assert result.finished_at >= result.started_at >= result.enqueued_at
    (error,) = result.errors
    assert error.exception_class is ValueError
    assert error.traceback.endswith("ValueError: This Task failed due to ValueError\n"), error.traceback
    assert result.attempts == 1  # Django's semantics: no retry unless the task asks for it


def test_complex_exception_and_unserialisable_return_value(worker: dramatiq.Worker) -> None:
    raised = finished(tasks.complex_exception.enqueue())
    assert raised.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in raised.errors[0].traceback
    returned = finished(tasks.complex_return_value.enqueue())
    assert returned.status == TaskResultStatus.FAILED
    assert returned.errors[0].exception_class is TypeError
    assert "Unsupported type" in returned.errors[0].traceback


def test_takes_context(worker: dramatiq.Worker) -> None:
    result = finished(tasks.get_task_id.enqueue())
    assert result.return_value == result.id
    assert finished(tasks.check_context.enqueue(1)).return_value == 1


def test_per_task_retries_count_attempts(worker: dramatiq.Worker) -> None:
    result = finished(tasks.fails_until_third_attempt.enqueue())
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert (result.return_value, result.attempts) == (3, 3)


def test_using_another_queue(worker: dramatiq.Worker) -> None:
    other = tasks.calculate_meaning_of_life.using(queue_name=tasks.OTHER_QUEUE)
    result = finished(other.enqueue())
    assert result.return_value == 42
    assert result.task.queue_name == tasks.OTHER_QUEUE
    assert tasks.calculate_meaning_of_life.get_result(result.id).task.queue_name == tasks.OTHER_QUEUE


def test_run_after_defers_the_task(worker: dramatiq.Worker) -> None:
    run_after = timezone.now() + timedelta(seconds=1.5)
    result = tasks.noop_task.using(run_after=run_after).enqueue()
    now = finished(tasks.noop_task.enqueue())
    assert now.finished_at < run_after
    result.refresh()
    assert result.status == TaskResultStatus.READY
    finished(result)
    assert result.started_at >= run_after
    assert result.task.run_after == run_after


def test_signals_follow_the_life_cycle(worker: dramatiq.Worker) -> None:
    seen: list[tuple[str, str, Any]] = []
    lock = threading.Lock()

    def receiver(name: str) -> Any:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            with lock:
                seen.append((name, task_result.id, (sender, task_result.status)))

        return receive

    receivers = {name: receiver(name) for name in ("task_enqueued", "task_started", "task_finished")}
    for name, receive in receivers.items():
        getattr(signals, name).connect(receive)
    try:
        result = finished(tasks.calculate_meaning_of_life.enqueue())
        wait_until(lambda: len(seen) == 3, what="three signals")
    finally:
        for name, receive in receivers.items():
            getattr(signals, name).disconnect(receive)
    assert seen == [
        ("task_enqueued", result.id, (PygigoBackend, TaskResultStatus.READY)),
        ("task_started", result.id, (PygigoBackend, TaskResultStatus.RUNNING)),
        ("task_finished", result.id, (PygigoBackend, TaskResultStatus.SUCCESSFUL)),
    ]


def test_enqueue_in_a_transaction_sends_on_commit(broker: PygigoBroker) -> None:
    with transaction.atomic():
        result = tasks.noop_task.enqueue()
        assert broker.queue_stats(tasks.QUEUE).ready == 0  # not sent before the commit
        assert tasks.noop_task.get_result(result.id).status == TaskResultStatus.READY
    wait_until(lambda: broker.queue_stats(tasks.QUEUE).ready == 1, what="the message after commit")

    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = tasks.noop_task.enqueue()
        raise RuntimeError("roll back")
    with pytest.raises(TaskResultDoesNotExist):
        tasks.noop_task.get_result(rolled_back.id)
    assert broker.queue_stats(tasks.QUEUE).ready == 1


def test_priority_is_mapped_or_refused(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    if not broker.capabilities.supports_priority:
        with pytest.raises(InvalidTask, match="has no message priority"):
            tasks.noop_task.using(priority=10)
        return
    urgent = tasks.calculate_meaning_of_life.using(priority=100)
    result = finished(urgent.enqueue())
    assert result.return_value == 42
    assert tasks.calculate_meaning_of_life.get_result(result.id).task.priority == 100


@pytest.mark.slow
def test_a_pygigo_worker_process_runs_the_tasks(broker: PygigoBroker, worker_env: dict[str, str]) -> None:
    if broker.scheme == "memory":
        pytest.skip("memory:// does not cross processes")
    results = [tasks.echo.enqueue(n) for n in range(3)]
    command = [sys.executable, "-m", "pygigo", "worker", "tests.tasks.tasks", "-p", "1", "-t", "2"]
    worker = subprocess.Popen(command, env=worker_env, start_new_session=True)
    try:
        for n, result in enumerate(results):
            assert finished(result, timeout=30).return_value == {"args": [n], "kwargs": {}}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert worker.returncode == 0
    # The worker process that ran it (a child of `pygigo worker`'s supervisor): host/pid.
    ((host, pid),) = {tuple(result.worker_ids[0].split("/")) for result in results}
    assert host == socket.gethostname()[:64] and int(pid) not in (os.getpid(), worker.pid)


def test_a_task_declared_while_apps_load_is_validated_without_building_the_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task module listed in PYGIGO_FUNCTIONS is imported inside an app's ready(), before a
    db:// broker can be built: the priority check asks the adapter class instead, and the
    broker is not built (it would fail, and the worker with it)."""
    from django.apps import apps
    from django.test import override_settings

    from pygigo.adapters.db.broker import DatabaseBroker
    from pygigo.platform import runtime

    runtime.reset()
    monkeypatch.setattr(apps, "ready", False)
    with override_settings(PYGIGO_BROKER_URL="db://"):
        backend = task_backends["default"]
        assert backend.supports_priority is DatabaseBroker.capabilities.supports_priority is True
        backend.validate_task(tasks.noop_task.using(priority=10))
    assert runtime.active_broker() is None

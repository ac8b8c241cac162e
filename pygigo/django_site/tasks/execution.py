"""A Django task as a Pygigo invocation: what travels, how a worker runs it, how its row reads.

On the wire a task is an ordinary signed ``call`` envelope addressed to the task's
:class:`TaskFunction` (registered under the task's module path). Its keyword arguments are
``{"args": [...], "kwargs": {...}, "task": {...}}``: the call, and what ``Task.using()``
changed (queue, priority, ``run_after`` as epoch seconds), so the worker rebuilds the very
task that was enqueued. The invocation row is the task's result: its id is
``TaskResult.id``.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dramatiq
from django.conf import settings
from django.utils import timezone

from pygigo.platform import invocations
from pygigo.platform.functions import MAX_PRIORITY, Function, FunctionOptions

from .. import tracking
from ..models import Invocation, Status
from .compat import (
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)

STATUSES = {
    Status.QUEUED: TaskResultStatus.READY,
    Status.RETRYING: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.DEAD: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}

#: An attempt whose worker is not recorded: the row keeps only the last attempt's holder.
UNKNOWN_WORKER = "unknown"


def pygigo_priority(priority: int) -> int:
    """Django's -100…100 onto Pygigo's 0…9, order kept: -100 → 0, 0 → 4, 100 → 9."""
    return (priority - TASK_MIN_PRIORITY) * MAX_PRIORITY // (TASK_MAX_PRIORITY - TASK_MIN_PRIORITY)


def task_meta(task: Task) -> dict[str, Any]:
    run_after = task.run_after.timestamp() if task.run_after is not None else None
    return {"queue_name": task.queue_name, "priority": task.priority, "run_after": run_after}


def deferred_ms(stored_envelope: Mapping[str, Any]) -> int | None:
    """How long a task's message must still wait (the outbox relay keeps ``run_after``), or
    None for anything that is not a deferred task."""
    kwargs = stored_envelope.get("kwargs")
    meta = kwargs.get("task") if isinstance(kwargs, Mapping) else None
    run_after = meta.get("run_after") if isinstance(meta, Mapping) else None
    if not isinstance(run_after, int | float):
        return None
    wait_ms = int((run_after - time.time()) * 1000)
    return wait_ms if wait_ms > 0 else None


def rebuild(task: Task, meta: Mapping[str, Any]) -> Task:
    """``task`` as it was enqueued (``Task.using`` values from the wire)."""
    run_after = meta.get("run_after")
    if run_after is None and (meta.get("queue_name"), meta.get("priority")) == (
        task.queue_name,
        task.priority,
    ):
        return task  # as declared: spares using()'s copy and validation on every run
    when = None if run_after is None else datetime.fromtimestamp(run_after, UTC)
    if when is not None and not settings.USE_TZ:
        when = timezone.make_naive(when)
    return task.using(queue_name=meta.get("queue_name"), priority=meta.get("priority"), run_after=when)


def task_error(error_text: str) -> TaskError:
    """A TaskError from an invocation's error (``path.Type: message``, blank line, traceback)."""
    head, _, trace = error_text.partition("\n\n")
    name = head.split(":", 1)[0].strip()
    path = name if "." in name else f"builtins.{name}"
    return TaskError(exception_class_path=path, traceback=trace or head)


def to_result(row: Invocation, task: Task, args: list[Any], kwargs: dict[str, Any]) -> TaskResult:
    status = STATUSES[Status(row.status)]
    errors = [task_error(row.error)] if row.error and row.status != Status.SUCCEEDED else []
    result = TaskResult(
        task=task,
        id=str(row.id),
        status=status,
        enqueued_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.started_at,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=errors,
        worker_ids=worker_ids(row),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", row.result)
    return result


def worker_ids(row: Invocation) -> list[str]:
    """One entry per attempt (``TaskResult.attempts`` counts them): ``host/pid`` of the worker
    process that ran the last one (from the row's holder), ``unknown`` for earlier ones."""
    if not row.attempts:
        return []
    last = "/".join(row.holder.split("/")[:2]) if row.holder else UNKNOWN_WORKER
    return [UNKNOWN_WORKER] * (row.attempts - 1) + [last]


def _finish(result: TaskResult, status: Any, **fields: Any) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())
    for name, value in fields.items():
        object.__setattr__(result, name, value)
    task_finished.send(type(result.task.get_backend()), task_result=result)


class TaskFunction(Function[..., Any]):
    """The Pygigo function a Django task runs as: one per task, named by its module path, not
    reachable over HTTP. Its options (queue, priority, retries, limits) are the task's."""

    over_http = False

    def __init__(self, task: Task, options: FunctionOptions, queues: set[str]) -> None:
        super().__init__(task.func, task.module_path, options)
        self.task = task
        #: Every queue the backend allows, so a worker also serves ``using(queue_name=...)``.
        self.queues = queues
        self.fn = self.run

    def bind(self, broker: dramatiq.Broker) -> dramatiq.Actor[..., Any]:
        actor = super().bind(broker)
        for queue in self.queues:
            broker.declare_queue(queue)
        return actor

    def send_with_options(
        self, *, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> dramatiq.Message[Any]:
        """Enqueue the task through its backend (a tracked invocation, as a schedule firing
        needs; message ``options`` do not apply); returns a description of the message sent
        (same id and queue, no body)."""
        result = self.task.enqueue(*args, **(kwargs or {}))
        return invocations.wire_message("", uuid.UUID(result.id).hex, self.task.queue_name, {})

    def run(self, args: list[Any], kwargs: dict[str, Any], task: dict[str, Any]) -> Any:
        """Run on a worker (after the tracker marked the row running): signals, context, a
        JSON-only return value, as Django's backends do."""
        envelope = invocations.current().envelope
        invocation_id = envelope.id if envelope else uuid.uuid4().hex
        row = (
            tracking.started_row(invocation_id)
            or Invocation.objects.filter(id=invocation_id).first()
            or Invocation(
                id=uuid.UUID(invocation_id), status=Status.RUNNING, attempts=1, started_at=timezone.now()
            )
        )
        current = rebuild(self.task, task)
        result = to_result(row, current, args, kwargs)
        sender = type(current.get_backend())
        task_started.send(sender, task_result=result)
        try:
            if current.takes_context:
                value = current.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = current.call(*args, **kwargs)
            value = normalize_json(value)
        except BaseException as exc:
            # Only the last attempt finishes the task; an earlier one is retried (READY).
            if row.attempts > self.options.max_retries:
                kind = type(exc)
                error = TaskError(
                    exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                    traceback="".join(traceback.format_exception(exc)),
                )
                _finish(result, TaskResultStatus.FAILED, errors=[*result.errors, error])
            raise
        _finish(result, TaskResultStatus.SUCCESSFUL, _return_value=value)
        return value

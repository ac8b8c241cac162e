"""``PygigoBackend``: Django's task backend contract on Pygigo's broker (``PYGIGO_BROKER_URL``).

A task is enqueued as a tracked invocation (see :mod:`.execution`): one signed envelope, one
``Invocation`` row, written in the caller's transaction and handed to the broker when it
commits. What a task asks for and the broker cannot do (a priority on a broker without
priorities, a queue name the broker cannot carry, a queue outside ``QUEUES``) raises Django's
``InvalidTask`` when the task is declared or enqueued, before anything is sent.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from pygigo.adapters.base import ConfigurationError, load_adapter
from pygigo.platform import runtime
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.envelope import Envelope
from pygigo.platform.functions import FunctionOptions
from pygigo.platform.registry import registry

from .. import store
from ..models import Invocation
from .compat import (
    DEFAULT_TASK_PRIORITY,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    normalize_json,
    task_enqueued,
)
from .execution import TaskFunction, pygigo_priority, rebuild, task_meta, to_result

#: Run options a task may set (``@task(max_retries=3)``) or the backend's ``OPTIONS`` default.
RUN_OPTIONS = ("max_retries", "min_backoff_s", "max_backoff_s", "time_limit_s", "max_age_s")
#: A task that raises has failed, as in Django's own backends, unless it asks for retries.
DEFAULTS = {"max_retries": 0}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PygigoTask(Task):
    """Django's Task plus Pygigo's run options (``None``: the backend's ``OPTIONS``, then
    Pygigo's defaults). Django 6.1 and the backport pass ``@task(...)`` extra keywords here."""

    max_retries: int | None = None
    min_backoff_s: float | None = None
    max_backoff_s: float | None = None
    time_limit_s: float | None = None
    max_age_s: float | None = None

    @property
    def pygigo_function(self) -> TaskFunction:
        """The function this task runs as (``@pygigo.cron`` schedules it through this)."""
        backend = self.get_backend()
        if not isinstance(backend, PygigoBackend):
            raise ConfigurationError(f"task {self.module_path} does not use Pygigo's task backend")
        return backend.function_for(self)


def _broker_class_or_instance() -> Any:
    """The broker, or while Django is still loading its apps, its adapter class. A task is
    declared (and validated) when its module is imported, which may happen inside an app's
    ``ready()`` (``PYGIGO_FUNCTIONS``), before a ``db://`` broker can be built; enqueueing
    validates again against the broker itself."""
    broker = runtime.active_broker()
    if broker is None and not apps.ready:
        return load_adapter(urlsplit(pygigo_settings.broker_url()).scheme)
    return broker or runtime.get_broker()


class PygigoBackend(BaseTaskBackend):
    task_class = PygigoTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - set(RUN_OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {', '.join(unknown)}; known: "
                f"{', '.join(RUN_OPTIONS)}. The broker is PYGIGO_BROKER_URL."
            )
        self.run_options = {**DEFAULTS, **self.options}

    @property
    def supports_priority(self) -> bool:
        """Whether the broker orders messages by priority (it depends on the URL)."""
        return _broker_class_or_instance().capabilities.supports_priority

    def validate_task(self, task: Task) -> None:
        if task.priority != DEFAULT_TASK_PRIORITY and not self.supports_priority:
            raise InvalidTask(
                f"priority={task.priority}: the {_broker_class_or_instance().scheme}:// broker has no "
                "message priority, so "
                "it cannot be honoured. Use the default priority (0), or a broker with priorities "
                "(amqp://, db://)."
            )
        super().validate_task(task)
        try:
            FunctionOptions(queue=task.queue_name)
        except ConfigurationError as exc:
            raise InvalidTask(str(exc)) from None
        self.function_for(task)

    def function_for(self, task: Task) -> TaskFunction:
        """The TaskFunction of ``task``, registered (and bound to the broker) on first use."""
        function = registry.get(task.module_path)
        if isinstance(function, TaskFunction):
            return function
        options = {**self.run_options}
        options.update(
            {name: getattr(task, name) for name in RUN_OPTIONS if getattr(task, name, None) is not None}
        )
        try:
            parsed = FunctionOptions(
                queue=task.queue_name, priority=pygigo_priority(task.priority), **options
            )
            function = TaskFunction(task, parsed, self.queues)
            registry.add(function)
        except (ConfigurationError, TypeError) as exc:
            raise InvalidTask(f"task {task.module_path}: {exc}") from None
        broker = runtime.active_broker()
        if broker is not None:
            function.bind(broker)
        return function

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        function = self.function_for(task)
        call_args, call_kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        envelope = Envelope(
            function=function.name,
            kind="call",
            kwargs={"args": call_args, "kwargs": call_kwargs, "task": task_meta(task)},
        )
        options = {"broker_priority": pygigo_priority(task.priority)} if self.supports_priority else {}
        # A run_after already past is no delay at all (Dramatiq would route delay=0 via its
        # delay queue).
        wait_ms = int((task.run_after - timezone.now()).total_seconds() * 1000) if task.run_after else 0
        delay_ms = wait_ms if wait_ms > 0 else None
        invocation, _ = store.submit(
            envelope, function, queue=task.queue_name, options=options, delay_ms=delay_ms
        )
        result = to_result(invocation, task, call_args, call_kwargs)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            row = Invocation.objects.filter(id=uuid.UUID(str(result_id))).first()
        except ValueError:
            row = None
        payload = row.envelope.get("kwargs") if row is not None else None
        if row is None or not isinstance(payload, dict) or "task" not in payload:
            raise TaskResultDoesNotExist(result_id)
        try:
            task = import_string(row.function)
        except ImportError:
            task = None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{result_id}: task {row.function} cannot be imported here")
        return to_result(row, rebuild(task, payload["task"]), payload["args"], payload["kwargs"])

"""Django's Tasks API for the tests: ``django.tasks`` on Django 6, the backport on 5.2."""

from __future__ import annotations

try:
    from django.tasks import TaskContext, TaskResultStatus, task, task_backends
except ImportError:
    from django_tasks import TaskContext, TaskResultStatus, task, task_backends  # type: ignore[no-redef]

from pygigo.django_site.tasks.compat import InvalidTask, TaskResultDoesNotExist, signals

__all__ = [
    "InvalidTask",
    "TaskContext",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "signals",
    "task",
    "task_backends",
]

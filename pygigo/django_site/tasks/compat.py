"""Django's Tasks API from wherever this Django has it: ``django.tasks`` (Django 6) or the
``django_tasks`` backport (Django 5.2). The rest of the package imports only from here.

Imported by name, typed ``Any``: the two packages' classes differ for a type checker (and
django-stubs may describe ``django.tasks`` on a Django that lacks it), not at run time."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"django.tasks.{name}")
    except ImportError:  # Django 5.2: the backport (a dependency on Python < 3.12)
        return importlib.import_module(f"django_tasks.{name}")


_base, _backends, _exceptions, _signals = (
    _module(n) for n in ("base", "backends.base", "exceptions", "signals")
)
_json: Any = (
    _module("utils")
    if _base.__name__.startswith("django_tasks")
    else importlib.import_module("django.utils.json")
)

DEFAULT_TASK_PRIORITY: int = _base.DEFAULT_TASK_PRIORITY
TASK_MIN_PRIORITY: int = _base.TASK_MIN_PRIORITY
TASK_MAX_PRIORITY: int = _base.TASK_MAX_PRIORITY
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultStatus: Any = _base.TaskResultStatus
BaseTaskBackend: Any = _backends.BaseTaskBackend
#: Django names it ``InvalidTask``; the backport ``InvalidTaskError``.
InvalidTask: type[Exception] = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
TaskResultDoesNotExist: type[Exception] = _exceptions.TaskResultDoesNotExist
normalize_json: Any = _json.normalize_json
signals: Any = _signals
task_enqueued: Any = _signals.task_enqueued
task_started: Any = _signals.task_started
task_finished: Any = _signals.task_finished

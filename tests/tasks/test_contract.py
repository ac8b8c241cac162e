"""What the backend checks and declares, independent of the broker (memory broker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.utils import timezone

import pygigo
from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.django_site.models import Invocation
from pygigo.django_site.tasks import PygigoBackend
from pygigo.django_site.tasks.execution import deferred_ms, pygigo_priority
from pygigo.platform import runtime
from pygigo.platform.schedules import schedules
from tests.conftest import migrate_database

from . import tasks
from .compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus, task_backends


@pytest.fixture
def broker() -> Iterator[PygigoBroker]:
    migrate_database("default")
    built = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(built)
    yield built
    runtime.reset()


def test_the_backend_declares_its_capabilities(broker: PygigoBroker) -> None:
    backend = task_backends["default"]
    assert isinstance(backend, PygigoBackend)
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result) == (True,) * 3
    assert backend.supports_priority is False  # memory:// has no message priority


def test_invalid_tasks_are_refused_with_invalid_task(broker: PygigoBroker) -> None:
    with pytest.raises(InvalidTask, match="Queue 'elsewhere' is not valid for backend"):
        tasks.noop_task.using(queue_name="elsewhere")
    with pytest.raises(InvalidTask, match="has no message priority"):
        tasks.noop_task.using(priority=-5)
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        tasks.noop_task.using(run_after=datetime(2030, 1, 1))  # naive: the point of the test
    queues = {"default": {"BACKEND": "pygigo.django_site.tasks.PygigoBackend", "QUEUES": ["bad queue"]}}
    with override_settings(TASKS=queues), pytest.raises(InvalidTask, match="use letters, digits"):
        tasks.noop_task.using(queue_name="bad queue")


def test_unknown_backend_options_are_a_configuration_error() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"unknown option.*broker_url.*PYGIGO_BROKER_URL"):
        PygigoBackend("default", {"OPTIONS": {"broker_url": "redis://"}})


def test_non_json_arguments_are_refused_before_anything_is_sent(broker: PygigoBroker) -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        tasks.noop_task.enqueue(object())
    assert broker.queue_stats(tasks.QUEUE).ready == 0


def test_get_result_of_an_unknown_id_or_a_plain_invocation(broker: PygigoBroker) -> None:
    for result_id in ("not-a-uuid", "0" * 32):
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result(result_id)


def test_priority_mapping_keeps_the_order() -> None:
    assert [pygigo_priority(p) for p in (-100, -1, 0, 50, 100)] == [0, 4, 4, 6, 9]


def test_tasks_are_not_invocable_over_http(broker: PygigoBroker) -> None:
    name = tasks.noop_task.module_path
    client = Client()
    assert client.post(f"/fn/{name}").status_code == 404
    assert name not in {fn["name"] for fn in client.get("/fn").json()["functions"]}


def test_the_relay_keeps_run_after() -> None:
    stored: dict[str, Any] = {"kwargs": {"task": {"run_after": time.time() + 60}}}
    assert 55_000 < (deferred_ms(stored) or 0) <= 60_000
    assert deferred_ms({"kwargs": {"x": 1}}) is None


def test_a_cron_schedule_can_target_a_django_task(broker: PygigoBroker) -> None:
    decorated = pygigo.cron("*/5 * * * *", name="meaning-every-5")(tasks.calculate_meaning_of_life)
    try:
        assert decorated is tasks.calculate_meaning_of_life  # still a task
        spec = schedules.get("meaning-every-5")
        assert spec is not None and spec.function == tasks.calculate_meaning_of_life.module_path
        # What the scheduler does when the slot comes: send the function the spec names.
        message = tasks.calculate_meaning_of_life.pygigo_function.send_with_options(args=())
    finally:
        schedules.remove("meaning-every-5")
    result = tasks.calculate_meaning_of_life.get_result(message.message_id)
    assert result.status == TaskResultStatus.READY
    assert broker.queue_stats(tasks.QUEUE).ready == 1


def test_run_after_in_the_past_runs_now(broker: PygigoBroker) -> None:
    tasks.noop_task.using(run_after=timezone.now() - timedelta(hours=1)).enqueue()
    assert broker.queue_stats(tasks.QUEUE).ready == 1


def test_the_api_shows_the_error_line_not_the_traceback() -> None:
    row = Invocation(error='ValueError: boom\n\nTraceback (most recent call last):\n  File "x.py"\n')
    assert row.as_json()["error"] == "ValueError: boom"

"""Django tasks the backend suite runs (after Django's own ``tests/tasks/tasks.py``), on a
queue named after the test run so concurrent runs sharing a broker never meet."""

from __future__ import annotations

import os
from typing import Any

from tests.tasks.compat import TaskContext, task

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"tasks-{RUN}"
OTHER_QUEUE = f"tasks-other-{RUN}"


@task(queue_name=QUEUE)
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None


@task(queue_name=QUEUE)
async def noop_task_async(*args: Any, **kwargs: Any) -> None:
    return None


@task(queue_name=QUEUE)
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task(queue_name=QUEUE)
def calculate_meaning_of_life() -> int:
    return 42


@task(queue_name=QUEUE)
def failing_task_value_error() -> None:
    raise ValueError("This Task failed due to ValueError")


@task(queue_name=QUEUE)
def complex_exception() -> None:
    raise ValueError(ValueError("This task failed"))


@task(queue_name=QUEUE)
def complex_return_value() -> Any:
    # Neither JSON nor anything else a result could be stored as.
    return lambda: True


@task(queue_name=QUEUE, takes_context=True)
def get_task_id(context: TaskContext) -> str:
    return str(context.task_result.id)


@task(queue_name=QUEUE, takes_context=True)
def check_context(context: TaskContext, attempt: int) -> int:
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt
    return int(context.attempt)


@task(queue_name=QUEUE, takes_context=True, max_retries=2, min_backoff_s=0.01, max_backoff_s=0.05)
def fails_until_third_attempt(context: TaskContext) -> int:
    """Per-task retries (a Django 6.1 / backport ``@task`` keyword)."""
    if context.attempt < 3:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return int(context.attempt)

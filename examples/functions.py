"""A functions module a newcomer can read in one minute.

Run a worker for it (any broker; here Redis). Every message is signed, so the worker and
whoever sends need the same key:

    export PYGIGO_SIGNING_KEYS=$(python -c 'import secrets; print(secrets.token_hex(32))')
    PYGIGO_BROKER_URL=redis://127.0.0.1:6379/0 pygigo worker examples.functions

and, from another process with the same two settings:

    >>> from examples.functions import add
    >>> add.send(1, 2)
"""

from __future__ import annotations

import logging

from django.http import HttpRequest

import pygigo

logger = logging.getLogger(__name__)


@pygigo.function(queue="math", max_retries=3, public=True)
def add(x: int, y: int) -> int:
    """Runs on a worker; retried up to 3 times if it raises. Public: anyone may call it over
    HTTP (``POST /fn/add`` with a JSON array or object of arguments)."""
    result = x + y
    logger.info("add(%s, %s) = %s", x, y, result)
    return result


@pygigo.function(queue="reports", time_limit_s=300, priority=2, public=True)
def nightly_report(day: str) -> dict[str, str]:
    """A slower job on its own queue, so urgent work keeps its own workers."""
    return {"day": day, "status": "done"}


@pygigo.function(public=True)
def hello(request: HttpRequest) -> dict[str, str]:
    """A Django view, run on a worker: ``POST /fn/hello?name=Ada``."""
    return {"hello": request.GET.get("name", "world")}


@pygigo.cron("0 3 * * *", timezone="Europe/Paris")
@pygigo.function(queue="reports")
def nightly_cleanup() -> None:
    """Scheduled: every night at 03:00 Paris time, exactly once however many schedulers run."""
    logger.info("nightly cleanup")


@pygigo.function
def noop() -> None:
    """Does nothing: handy for checking a deployment end to end."""

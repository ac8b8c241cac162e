"""Functions the Django-site tests invoke (over HTTP and with ``fn.invoke``).

The queue carries the test run's id, so runs sharing a Redis never see each other's messages.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"fe-{RUN}"

#: Released by tests that need a function to stay running for a while.
gate = threading.Event()
calls: list[str] = []


@pygigo.function(queue=QUEUE, public=True, methods=("GET", "POST", "PUT"))
def fe_echo(request: HttpRequest) -> HttpResponse:
    """A plain Django view: echoes method, path, query, body, and who called."""
    return JsonResponse(
        {
            "method": request.method,
            "query": request.GET.urlencode(),
            "body": request.body.decode("utf-8", "replace"),
            "user": request.user.get_username() if request.user.is_authenticated else None,
            "cookie": request.headers.get("Cookie"),
        },
        status=201,
        headers={"X-Echo": "yes"},
    )


@pygigo.function(queue=QUEUE)
def fe_private(request: HttpRequest) -> dict[str, Any]:
    return {"ok": True}


@pygigo.function(queue=QUEUE)
def fe_add(x: int, y: int) -> int:
    return x + y


@pygigo.function(queue=QUEUE, max_retries=2, min_backoff_s=0.01, max_backoff_s=0.02)
def fe_flaky(key: str) -> str:
    calls.append(key)
    raise RuntimeError("always fails")


@pygigo.function(queue=QUEUE, max_retries=0)
def fe_fails_once(key: str) -> None:
    raise ValueError("no retries for me")


@pygigo.function(queue=QUEUE, public=True)
def fe_block(request: HttpRequest) -> dict[str, Any]:
    gate.wait(10)
    return {"released": gate.is_set()}


@pygigo.function(queue=QUEUE)
def fe_count(key: str) -> int:
    calls.append(key)
    return len(calls)


@pygigo.function(queue=QUEUE)
def fe_hold(key: str) -> str:
    """Runs until the test sets ``gate``."""
    calls.append(key)
    gate.wait(10)
    return key


@pygigo.function(queue=QUEUE, public=True, priority=0)
def fe_low(key: str) -> None:
    calls.append(f"low:{key}")


@pygigo.function(queue=QUEUE, public=True, priority=9)
def fe_high(key: str) -> None:
    calls.append(f"high:{key}")

"""Functions the Django-site tests invoke (over HTTP and with ``fn.invoke``).

The queue carries the test run's id, so runs sharing a Redis never see each other's messages.
"""

from __future__ import annotations

import json
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


#: (password, token) as fe_login received them.
logins: list[tuple[str | None, str | None]] = []


@pygigo.function(queue=QUEUE, public=True, sensitive=("password", "token"))
def fe_login(request: HttpRequest) -> HttpResponse:
    """Receives sensitive fields (in the body or the query); answers with a session cookie."""
    fields = json.loads(request.body) if request.content_type == "application/json" else request.POST
    logins.append((fields.get("password"), request.GET.get("token")))
    response = JsonResponse({"user": fields.get("user")})
    response.set_cookie("sessionid", "cookie-value-of-the-response")
    return response


@pygigo.function(queue=QUEUE, max_retries=0, sensitive=("card",))
def fe_charge(amount: int, card: str) -> None:
    """Fails quoting its sensitive argument, as careless code does."""
    raise ValueError(f"card {card} declined for {amount}")


@pygigo.function(queue=QUEUE, max_retries=0, forward_secrets=True)
def fe_use_token(request: HttpRequest) -> None:
    """Fails quoting the credential it was forwarded."""
    raise PermissionError(f"upstream refused {request.headers['Authorization']}")


@pygigo.function(queue=QUEUE, public=True, priority=0)
def fe_low(key: str) -> None:
    calls.append(f"low:{key}")


@pygigo.function(queue=QUEUE, public=True, priority=9)
def fe_high(key: str) -> None:
    calls.append(f"high:{key}")

"""The default site's URLs plus ``POST /bench/reference``: the physical limit of an accept that
loses nothing, served by the same gunicorn as ``POST /fn/noop``.

It does exactly one INSERT of a row shaped and sized like an invocation row into the same
database, and one publish of a message of the same size to the same broker through raw
Dramatiq (RabbitMQ with publisher confirms, as Pygigo), and nothing else: no authentication,
no envelope, no signing.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

import dramatiq
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from pygigo.django_site.models import Invocation

QUEUE = os.environ.get("BENCH_QUEUE", "bench") + "_ref"
#: What a captured ``POST /fn/noop`` without a body stores (same keys, same size).
ENVELOPE = {
    "function": "noop",
    "kind": "http",
    "id": "0" * 32,
    "version": 1,
    "args": [],
    "kwargs": {},
    "method": "POST",
    "path": "/fn/noop",
    "script_name": "",
    "scheme": "http",
    "query": [],
    "headers": [["Host", "127.0.0.1:8000"], ["Content-Length", "0"]],
    "body": "",
    "body_encoding": "utf-8",
    "content_type": None,
    "route_kwargs": {},
    "client_addr": "127.0.0.1",
    "claim_check": None,
    "principal": None,
    "idempotency_key": None,
    "deadline": None,
    "enqueued_at": 1796152408.2383406,
    "trace_id": "0" * 32,
}
#: The sealed envelope a message carries: the JSON plus a signature.
WIRE = json.dumps(ENVELOPE) + "." + "s" * 64

_local = threading.local()


def _broker() -> dramatiq.Broker:
    if not hasattr(_local, "broker"):
        url = os.environ["PYGIGO_BROKER_URL"]
        if url.startswith("amqp"):
            from dramatiq.brokers.rabbitmq import RabbitmqBroker

            _local.broker = RabbitmqBroker(url=url, confirm_delivery=True, middleware=[])
        else:
            from dramatiq.brokers.redis import RedisBroker

            _local.broker = RedisBroker(url=url, middleware=[])
        _local.broker.declare_queue(QUEUE)
    return _local.broker  # type: ignore[no-any-return]


@csrf_exempt
def reference(request: HttpRequest) -> JsonResponse:
    row_id = uuid.uuid4()
    Invocation.objects.create(id=row_id, function="noop", queue=QUEUE, envelope=ENVELOPE, relayed=True)
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=QUEUE, actor_name="noop", args=(WIRE,), kwargs={}, options={}
    )
    _broker().enqueue(message)
    return JsonResponse({"id": str(row_id), "status": "queued"}, status=202)


urlpatterns = [
    path("bench/reference", reference),
    path("", include("pygigo.default_site.urls")),
]

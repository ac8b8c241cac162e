"""The HTTP benchmark's function (``PYGIGO_FUNCTIONS=bench.http_functions`` in gunicorn, and
``pygigo worker bench.http_functions`` for ``Prefer: wait``): a public no-op Django view."""

from __future__ import annotations

import os

from django.http import HttpRequest

import pygigo

QUEUE = os.environ.get("BENCH_QUEUE", "bench")


@pygigo.function(name="noop", queue=QUEUE, public=True)
def noop(request: HttpRequest) -> dict[str, bool]:
    return {"ok": True}

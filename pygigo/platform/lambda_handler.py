"""AWS Lambda entry point for SQS-triggered workers: ``pygigo.platform.lambda_handler.handler``.

Configure the function with environment variables:

  PYGIGO_BROKER_URL       an ``sqs://`` URL (in AWS: ``sqs://?region=…&prefix=…&create_queues=false``)
  PYGIGO_FUNCTIONS        comma-separated modules that define your functions
  DJANGO_SETTINGS_MODULE  your settings (default: Pygigo's own site)

and give its SQS event source mapping ``FunctionResponseTypes: [ReportBatchItemFailures]``.
The first invocation of a container sets Django up, imports the modules and builds the broker
(cold start); later ones reuse them. Only the adapter knows SQS records: the platform hands the
event to whatever broker ``PYGIGO_BROKER_URL`` built, so it never imports a concrete adapter.
"""

from __future__ import annotations

import threading
from typing import Any

from ..adapters.base import ConfigurationError, PygigoBroker
from . import runtime, settings, worker
from .registry import registry

_booted: PygigoBroker | None = None
_lock = threading.Lock()


def boot() -> PygigoBroker:
    """Django, the functions modules, the broker: once per container."""
    global _booted
    with _lock:
        if _booted is None:
            settings.ensure_django()
            worker.import_modules(settings.functions_modules())
            if not len(registry):
                raise ConfigurationError(
                    "No @pygigo.function is registered. Set PYGIGO_FUNCTIONS to the module(s) that define "
                    "your functions, e.g. PYGIGO_FUNCTIONS=myproject.functions."
                )
            _booted = runtime.get_broker()
        return _booted


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Run an SQS event batch; answer ``{"batchItemFailures": [...]}`` (only failed records)."""
    broker = boot()
    handle = getattr(broker, "handle_sqs_event", None)
    if handle is None:
        raise ConfigurationError(
            f"The Lambda handler runs SQS event batches, but PYGIGO_BROKER_URL names a {broker.scheme}:// "
            f"broker. Use an sqs:// URL for the queues the event source mapping reads."
        )
    time_left = getattr(context, "get_remaining_time_in_millis", None)
    result: dict[str, list[dict[str, str]]] = handle(event, time_left_ms=time_left)
    return result


def reset() -> None:
    """Forget the booted broker (tests)."""
    global _booted
    with _lock:
        _booted = None

"""Pygigo: serverless-style dispatch for Django.

Write plain functions, run them on Dramatiq workers over the broker that one URL names::

    import pygigo

    @pygigo.function(queue="math", max_retries=3)
    def add(x, y):
        return x + y

    add.send(1, 2)   # PYGIGO_BROKER_URL=redis://… pygigo worker myproject.functions

    @pygigo.cron("*/15 * * * *", timezone="Europe/Paris")   # pygigo scheduler myproject.functions
    @pygigo.function(queue="reports")
    def report(): ...
"""

from __future__ import annotations

from .adapters.errors import (
    BrokerError,
    BrokerUnavailable,
    CapabilityError,
    ConfigurationError,
    DriverMissing,
    MessageTooLarge,
    PygigoError,
    QueueMissing,
)
from .platform.functions import BadArguments, Function, FunctionOptions, function
from .platform.runtime import get_broker, set_broker
from .platform.schedules import cron, every

__all__ = [
    "BadArguments",
    "BrokerError",
    "BrokerUnavailable",
    "CapabilityError",
    "ConfigurationError",
    "DriverMissing",
    "Function",
    "FunctionOptions",
    "MessageTooLarge",
    "PygigoError",
    "QueueMissing",
    "cron",
    "every",
    "function",
    "get_broker",
    "set_broker",
]

"""Pygigo's one exception tree.

Driver exceptions (``redis.ConnectionError``, ``pika.exceptions.AMQPError``,
``botocore.exceptions.ClientError``, ...) are translated at the edge of each
adapter into this tree, so user code catches Pygigo errors and never a driver's::

    PygigoError
    ├── ConfigurationError          (also a Django ImproperlyConfigured)
    │   └── DriverMissing           optional driver not installed; names the extra
    └── BrokerError                 (also a dramatiq BrokerError)
        ├── BrokerUnavailable       cannot reach the broker (also a dramatiq BrokerConnectionError,
        │                           so Dramatiq's worker keeps retrying as it does for its own)
        ├── QueueMissing            the queue does not exist on the broker
        ├── MessageTooLarge         refused before any I/O: over the adapter's max_message_bytes
        └── CapabilityError         the adapter cannot do what was asked (e.g. priority)

The platform and the Django app raise from the same root, so ``except PygigoError`` catches
everything Pygigo raises on purpose::

    PygigoError
    ├── EnvelopeError               (also a ValueError) malformed, forged or expired envelope
    ├── CronError                   (also a ValueError) bad cron expression or timezone
    │   └── ScheduleConfigError     (also a ConfigurationError) a schedule that cannot be declared
    ├── InvocationError             a tracked invocation failed, was cancelled or timed out
    ├── BadArguments                (also a TypeError) arguments that do not fit the signature
    └── ApiError                    an HTTP API error: status, stable code, detail

Every message says the likely cause and the fix.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from dramatiq import errors as dramatiq_errors

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "CapabilityError",
    "ConfigurationError",
    "DriverMissing",
    "MessageTooLarge",
    "PygigoError",
    "QueueMissing",
]


class PygigoError(Exception):
    """Base class of every error Pygigo raises on purpose."""


class ConfigurationError(PygigoError, ImproperlyConfigured):
    """The configuration is wrong: a bad broker URL, an unknown option, a bad setting."""


class DriverMissing(ConfigurationError):
    """A broker's optional driver package is not installed."""

    def __init__(self, scheme: str, module: str, extra: str) -> None:
        self.scheme, self.module, self.extra = scheme, module, extra
        super().__init__(
            f"The {scheme}:// broker needs the {module!r} package, which is not installed. "
            f"Install it with: pip install 'pygigo[{extra}]'"
        )


class BrokerError(PygigoError, dramatiq_errors.BrokerError):
    """Something went wrong talking to the broker."""


class BrokerUnavailable(BrokerError, dramatiq_errors.BrokerConnectionError):
    """The broker cannot be reached (down, wrong host or port, refused credentials)."""


class QueueMissing(BrokerError):
    """The queue does not exist on the broker and could not be declared."""


class MessageTooLarge(BrokerError):
    """The encoded message is larger than the broker accepts; refused before sending."""

    def __init__(self, size_bytes: int, limit_bytes: int, scheme: str) -> None:
        self.size_bytes, self.limit_bytes = size_bytes, limit_bytes
        super().__init__(
            f"Message of {size_bytes} bytes exceeds the {scheme}:// broker's limit of "
            f"{limit_bytes} bytes. Send a smaller payload, or pass a reference "
            f"(a URL or a storage key) instead of the data itself."
        )


class CapabilityError(BrokerError):
    """The broker cannot do what was asked (see its ``capabilities``)."""

"""The adapter contract: how Pygigo talks to a broker.

An *adapter* is a Dramatiq :class:`~dramatiq.Broker` subclass that also derives from
:class:`PygigoBroker`. It is built from one URL (``redis://…``, ``amqp://…``, ``memory://``,
``db://…``, ``sqs://…``) and declares what it can do in :class:`Capabilities`, so limits are
checked here, before any I/O, instead of surfacing later as driver errors.

Contract for an adapter module (kombu's transport docstrings are the model: each adapter's
module docstring lists its features, its URL form and its options):

* import only this module (and :mod:`.errors`) and its own driver; never the platform;
* subclass ``PygigoBroker`` *before* the Dramatiq broker class it extends, so the checks and
  error translation here wrap the driver's ``enqueue``;
* set ``scheme``, ``capabilities``, ``url_options`` and ``driver_errors``;
* implement :meth:`PygigoBroker._from_url`, :meth:`PygigoBroker.ping` and
  :meth:`PygigoBroker.queue_stats`.

Adapters are found by URL scheme through a registry of dotted paths (like Django's task
backends), so importing Pygigo never imports a broker driver you do not use.

The exception tree lives in :mod:`pygigo.adapters.errors` and is re-exported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import dramatiq
from dramatiq.middleware import Middleware

from .errors import (
    BrokerError,
    BrokerUnavailable,
    CapabilityError,
    ConfigurationError,
    DriverMissing,
    MessageTooLarge,
    PygigoError,
    QueueMissing,
)

__all__ = [
    "AdapterSpec",
    "BrokerError",
    "BrokerURL",
    "BrokerUnavailable",
    "Capabilities",
    "CapabilityError",
    "ConfigurationError",
    "DriverMissing",
    "MessageTooLarge",
    "Option",
    "PygigoBroker",
    "PygigoError",
    "QueueMissing",
    "QueueStats",
    "Redactor",
    "Sealer",
    "build_broker",
    "known_schemes",
    "load_adapter",
    "redact",
    "redact_text",
    "redactor",
    "register_adapter",
    "sealer",
    "set_redactor",
    "set_sealer",
]


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a broker can do, where it differs between brokers. Each field is checked
    centrally, so asking for what the broker cannot do fails early and the same way everywhere
    (how each adapter delays, dead-letters and redelivers is in its module docstring; the
    conformance suite checks it behaves the same).

    Attributes:
      max_message_bytes: largest encoded message the broker accepts, or None for no
        practical limit. A larger message raises :class:`MessageTooLarge` before sending;
        ``manage.py check`` warns when the HTTP body limit is above it (pygigo.W002).
      supports_priority: messages carry a broker-level priority (higher runs first).
        Without it, ``priority`` still orders work inside one worker's prefetch, and a
        per-call priority raises :class:`CapabilityError` (it would be dropped).
      durable: messages survive the death of the process that sent them, and a worker
        killed mid-task gets its message delivered again (at-least-once). Without it,
        ``manage.py check`` warns outside DEBUG (pygigo.W005).
      text_bodies: the broker stores message bodies as text, so Dramatiq's encoder must
        produce UTF-8; a binary encoder raises :class:`CapabilityError` when the broker is
        built (and at send, should it change later).
    """

    max_message_bytes: int | None = None
    supports_priority: bool = False
    durable: bool = True
    text_bodies: bool = False


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """Message counts of one queue. ``ready``: waiting to run; ``delayed``: waiting for
    their ETA; ``dead``: dead-lettered. Counts exclude messages held by running workers.

    ``oldest_ready_age_s``: seconds since the oldest ready message was sent (the signal
    queue-based autoscalers scale on); 0.0 for an empty queue; None where the broker cannot
    tell (each adapter's docstring says why)."""

    ready: int
    delayed: int
    dead: int
    oldest_ready_age_s: float | None = None


@dataclasses.dataclass(frozen=True)
class Option:
    """One URL query option an adapter accepts: its parser, default and help text."""

    parse: Callable[[str], Any]
    default: Any
    help: str


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclasses.dataclass(frozen=True)
class BrokerURL:
    """A parsed broker URL: scheme, the URL without its Pygigo options, and the options.

    ``options`` holds every declared option, parsed, with defaults filled in. A query key the
    adapter does not declare is refused (never silently ignored).
    """

    scheme: str
    raw: str
    netloc: str
    hostname: str | None
    port: int | None
    path: str
    options: Mapping[str, Any]

    @classmethod
    def parse(cls, url: str, declared: Mapping[str, Option]) -> BrokerURL:
        parts = urlsplit(url)
        options: dict[str, Any] = {name: option.default for name, option in declared.items()}
        seen: set[str] = set()
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ConfigurationError(
                    f"Unknown option {key!r} in broker URL {redact(url)!r}. "
                    f"Options the {parts.scheme}:// broker accepts: {known}."
                )
            if key in seen:
                raise ConfigurationError(f"Option {key!r} is given twice in broker URL {redact(url)!r}.")
            seen.add(key)
            try:
                options[key] = declared[key].parse(value)
            except ValueError as exc:
                raise ConfigurationError(
                    f"Bad value for option {key!r} in broker URL {redact(url)!r}: {exc}. "
                    f"({key}: {declared[key].help})"
                ) from None
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"Bad port in broker URL {redact(url)!r}.") from None
        return cls(
            scheme=parts.scheme,
            raw=url,
            netloc=parts.netloc,
            hostname=parts.hostname,
            port=port,
            path=parts.path,
            options=options,
        )

    @property
    def redacted(self) -> str:
        """The URL as it may be printed (no password)."""
        return redact(self.raw)

    def without_query(self) -> str:
        """The URL as the driver should see it: Pygigo's options removed."""
        return self.raw.split("?", 1)[0]


def age_s(sent_at_ms: float | None) -> float:
    """Seconds since ``sent_at_ms`` (epoch milliseconds, Dramatiq's ``message_timestamp``);
    0.0 when there is no message. Never negative (clocks of two hosts may disagree)."""
    if sent_at_ms is None:
        return 0.0
    return max(0.0, time.time() - sent_at_ms / 1000)


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def redact_text(text: str, url: str) -> str:
    """``text`` with the password of ``url`` replaced, as written and percent-decoded: a
    driver's error message may quote the URL it was given, or the password it parsed."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    for form in {password, unquote(password)} if password else ():
        text = text.replace(form, "***")
    return text


class Redactor:
    """What of a message may be kept once it has run, or shown to people: the platform knows
    which arguments are secret (forwarded credentials, fields a function marks sensitive),
    an adapter does not, so the platform installs its own with :func:`set_redactor`. This
    default hides nothing.

    Adapters that keep messages after their run (dead letters) store ``message(m)`` and
    ``text(error, m)``, and any page that shows a stored message shows ``message(m)``.
    """

    def message(self, message: Any) -> dramatiq.Message[Any]:
        """``message`` (or a worker's proxy of it) with its secret arguments masked (never
        signed again: it is for keeping and reading, not for running)."""
        return message

    def text(self, text: str, message: Any) -> str:
        """``text`` (an error, a log line) with any secret value of ``message`` masked."""
        return text


_redactor = Redactor()


def set_redactor(redactor: Redactor) -> None:
    global _redactor
    _redactor = redactor


def redactor() -> Redactor:
    """The process's :class:`Redactor` (the platform's, once it is imported)."""
    return _redactor


class Sealer:
    """Makes a stored message runnable again after an adapter changes its options (the
    ``db://`` admin requeues a dead letter with a fresh retry budget). Workers run only what
    the platform signed and only the platform can sign, so it installs its own with
    :func:`set_sealer`; this default applies the change and signs nothing."""

    def reseal(self, message: dramatiq.Message[Any], options: dict[str, Any]) -> dramatiq.Message[Any]:
        """``message`` with ``options`` changed, signed again with a fresh expiry. Raises
        :class:`PygigoError` if ``message`` as stored does not verify (altered, forged, or
        kept with its secrets masked): signing it would vouch for a message nobody sent."""
        return message.copy(options=options)


_sealer = Sealer()


def set_sealer(sealer: Sealer) -> None:
    global _sealer
    _sealer = sealer


def sealer() -> Sealer:
    """The process's :class:`Sealer` (the platform's, once it is imported)."""
    return _sealer


class PygigoBroker(dramatiq.Broker):
    """Mixin every adapter's broker derives from (before the Dramatiq broker it extends).

    Thread safety: as for the Dramatiq broker underneath; every adapter shipped with Pygigo
    may be shared by the threads of one process. Not shareable across ``fork``: build one per
    process.
    """

    #: URL scheme(s) this adapter serves; the first is its canonical name.
    scheme: ClassVar[str]
    #: Class default; an instance may narrow it (e.g. RabbitMQ with priority turned off).
    capabilities: Capabilities
    #: Query options the URL may carry; anything else is refused.
    url_options: ClassVar[Mapping[str, Option]] = {}
    #: Driver exception types that mean "could not talk to the broker".
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    #: Where the broker is, for error messages (host:port, never a password).
    endpoint: str = "?"
    #: The URL it was built from (with its password: print only ``redact(url)``).
    url: str = ""

    @classmethod
    def from_url(cls, url: str, *, middleware: list[Middleware] | None = None) -> Self:
        """Build a broker from ``url``. Performs no I/O: connections open lazily."""
        parsed = BrokerURL.parse(url, cls.url_options)
        cls.check_encoder()
        broker = cls._from_url(parsed, middleware=middleware)
        broker.url = url
        return broker

    @classmethod
    def check_encoder(cls) -> None:
        """Raise :class:`CapabilityError` if this broker keeps bodies as text and Dramatiq's
        encoder does not produce it (a msgpack or pickle encoder): refused when configured,
        not at the first send."""
        if not cls.capabilities.text_bodies:
            return
        probe: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="probe", actor_name="probe", args=("é",), kwargs={}, options={}
        )
        try:
            probe.encode().decode("utf-8")
        except UnicodeDecodeError:
            raise CapabilityError(
                f"The {cls.scheme}:// broker stores message bodies as text, but the configured Dramatiq "
                f"encoder ({type(dramatiq.get_encoder()).__name__}) produces binary. Use Dramatiq's "
                "JSON encoder (Pygigo's default)."
            ) from None

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        raise NotImplementedError

    def ping(self) -> None:
        """Check the broker can be reached; raise :class:`BrokerUnavailable` naming where.

        Used by the worker to fail fast at start-up, and by ``manage.py check``.
        """
        raise NotImplementedError

    def queue_stats(self, queue_name: str) -> QueueStats:
        """Message counts and oldest ready age of ``queue_name`` (see :class:`QueueStats`).
        Read-only: it never changes what a consumer receives or when."""
        raise NotImplementedError

    def deliveries(self, message: Any) -> int | None:
        """How many times the broker has handed out this message (this delivery included),
        counting redeliveries after a worker died, not Dramatiq's retries (those are new
        messages); None where the broker does not count."""
        return None

    # Enqueue: capability checks first, then the driver, with its errors translated.
    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        self.check_size(message)
        # Inline rather than `with self.translate_errors()`: this is every send's hot path.
        try:
            return super().enqueue(message, delay=delay)
        except PygigoError:
            raise
        except self.driver_errors as exc:
            raise self.translate(exc) from exc
        except dramatiq.errors.BrokerConnectionError as exc:
            raise self.unavailable(exc) from exc

    def enqueue_many(self, messages: Sequence[dramatiq.Message[Any]]) -> list[dramatiq.Message[Any]]:
        """Enqueue several undelayed messages; returns them as enqueued. When it returns, the
        broker has them all (as durable as ``enqueue``). Adapters override it to batch round
        trips (RabbitMQ: one commit per batch; SQS: SendMessageBatch). Not atomic: on error
        some messages may have been enqueued already."""
        return [self.enqueue(message) for message in messages]

    def check_size(self, message: dramatiq.Message[Any]) -> None:
        limit = self.capabilities.max_message_bytes
        if limit is not None:
            size = len(message.encode())
            if size > limit:
                raise MessageTooLarge(size, limit, self.scheme)

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn this adapter's driver errors into Pygigo's (see :meth:`translate`)."""
        try:
            yield
        except PygigoError:
            raise
        except self.driver_errors as exc:
            raise self.translate(exc) from exc
        except dramatiq.errors.BrokerConnectionError as exc:
            raise self.unavailable(exc) from exc

    def translate(self, exc: BaseException) -> PygigoError:
        """The one place a driver error of this adapter becomes a Pygigo error, whichever
        operation raised it (default: :class:`BrokerUnavailable`). Adapters whose driver
        tells faults apart (missing credentials, a missing queue) override it."""
        return self.unavailable(exc)

    def unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"Cannot reach the {self.scheme}:// broker at {self.endpoint} "
            f"({type(exc).__name__}: {redact_text(str(exc), self.url)}). "
            f"Is the server running and reachable? Check PYGIGO_BROKER_URL."
        )


# ---------------------------------------------------------------------------------------------
# The registry: URL scheme -> where the adapter lives and which driver/extra it needs.


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """Where an adapter lives (``module:Class``), the driver module it imports and the
    ``pip install pygigo[extra]`` that provides it (None: no optional driver)."""

    path: str
    driver: str | None = None
    extra: str | None = None


_REGISTRY: dict[str, AdapterSpec] = {
    "memory": AdapterSpec("pygigo.adapters.memory:MemoryBroker"),
    "redis": AdapterSpec("pygigo.adapters.redis:RedisBroker", "redis", "redis"),
    "rediss": AdapterSpec("pygigo.adapters.redis:RedisBroker", "redis", "redis"),
    "amqp": AdapterSpec("pygigo.adapters.rabbitmq:RabbitmqBroker", "pika", "rabbitmq"),
    "amqps": AdapterSpec("pygigo.adapters.rabbitmq:RabbitmqBroker", "pika", "rabbitmq"),
    "db": AdapterSpec("pygigo.adapters.db.broker:DatabaseBroker"),
    "sqs": AdapterSpec("pygigo.adapters.sqs:SQSBroker", "boto3", "sqs"),
}


def register_adapter(scheme: str, spec: AdapterSpec | str) -> None:
    """Register (or replace) the adapter serving ``scheme``; ``spec`` may be a dotted path."""
    _REGISTRY[scheme] = AdapterSpec(spec) if isinstance(spec, str) else spec


def known_schemes() -> list[str]:
    return sorted(_REGISTRY)


def load_adapter(scheme: str) -> type[PygigoBroker]:
    """The adapter class for ``scheme``. Raises :class:`ConfigurationError` for an unknown
    scheme (listing the known ones) and :class:`DriverMissing` when its driver is absent."""
    try:
        spec = _REGISTRY[scheme]
    except KeyError:
        raise ConfigurationError(
            f"Unknown broker scheme {scheme + '://'!r}. Known schemes: "
            + ", ".join(f"{s}://" for s in known_schemes())
            + ". Set PYGIGO_BROKER_URL to one of them."
        ) from None
    module_name, _, class_name = spec.path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if spec.driver and exc.name and exc.name.split(".")[0] == spec.driver:
            raise DriverMissing(scheme, spec.driver, spec.extra or spec.driver) from exc
        raise
    adapter = getattr(module, class_name, None)
    if not (isinstance(adapter, type) and issubclass(adapter, PygigoBroker)):
        raise ConfigurationError(
            f"{spec.path!r} (registered for {scheme}://) is not a PygigoBroker subclass."
        )
    return adapter


def build_broker(url: str, *, middleware: list[Middleware] | None = None) -> PygigoBroker:
    """Build the broker ``url`` names. No I/O happens until the broker is used."""
    if "://" not in url:
        raise ConfigurationError(
            f"Broker URL {redact(url)!r} has no scheme. Use one of: "
            + ", ".join(f"{s}://" for s in known_schemes())
            + "."
        )
    scheme = url.split("://", 1)[0].lower()
    return load_adapter(scheme).from_url(url, middleware=middleware)

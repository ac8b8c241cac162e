"""Envelopes on the wire: how a signed envelope becomes a Dramatiq message and is run.

An invocation (an HTTP request or a tracked call) travels as one Dramatiq message whose
actor is :data:`ENVELOPE_ACTOR` and whose only argument is the *sealed* envelope (its
canonical JSON text and signature, see :mod:`.envelope.signing`). The message goes to the target
function's own queue and carries that function's retry, time-limit, age and priority
options, so Dramatiq's middleware treats it exactly like a direct ``fn.send``.

On the worker, :class:`.guard.MessageGuard` (always installed by ``runtime.build_middleware``)
verifies the message and the envelope *before anything else looks at them*: an unsigned,
forged, malformed or expired one is failed (dead-lettered, never run, never retried). The
verified envelope is kept in a thread-local for the actor and for storage middleware such as
the Django site's invocation tracker (:func:`current`).

The platform stays ignorant of storage and of Django's request objects through two hooks,
registered by the Django site when its app is ready:

* :func:`set_http_runner` — runs a function for an ``http`` envelope (rebuilds the request,
  returns a JSON-able response dict);
* :func:`set_invoker` — backs ``Function.invoke`` (records the invocation, waits for it).

Plain ``fn.send(...)`` messages carry no envelope: the guard checks only their signature.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dramatiq

from ..adapters.base import ConfigurationError, PygigoError, Redactor, Sealer, set_redactor, set_sealer
from . import redaction, settings
from .envelope import Envelope, EnvelopeError, canonical_json, verify
from .envelope.model import parse_json
from .functions import BadArguments
from .registry import registry

if TYPE_CHECKING:
    from .functions import Function

logger = logging.getLogger("pygigo.invocations")


#: The internal actor every envelope message is addressed to.
ENVELOPE_ACTOR = "pygigo.envelope"


def mask_message(message: Any) -> tuple[dramatiq.Message[Any], set[str]]:
    """``message`` with its secrets masked (see :mod:`.redaction`), and the values masked.
    An envelope message keeps its envelope, masked: for reading, it is not signed again."""
    if message.actor_name == ENVELOPE_ACTOR:
        try:
            data = parse_json(message.args[0]) if len(message.args) == 1 else None
        except EnvelopeError:
            data = None
        if not isinstance(data, dict):  # not an envelope: nothing of it is known to be secret
            return message, set()
        name = data.get("function")
        masked, values = redaction.mask_envelope(data, registry.get(name) if isinstance(name, str) else None)
        return message.copy(args=(canonical_json(masked).decode(),)), values
    function = registry.get(message.actor_name)
    if function is None or not function.options.sensitive:
        return message, set()
    masker = redaction.Masker(function.options.sensitive)
    args, kwargs = masker.arguments(function, message.args, message.kwargs)
    return message.copy(args=tuple(args), kwargs=kwargs), masker.values


class MessageRedactor(Redactor):
    """The platform's :class:`~pygigo.adapters.base.Redactor`: what adapters keep of a message
    after its run (``db://`` dead letters) is masked, and so is its error text."""

    def message(self, message: Any) -> dramatiq.Message[Any]:
        masked, values = mask_message(message)
        trace = masked.options.get("traceback")  # Dramatiq's Retries keeps the last one here
        if values and isinstance(trace, str):
            masked = masked.copy(options={"traceback": redaction.scrub(trace, values)})
        return masked

    def text(self, text: str, message: Any) -> str:
        return redaction.scrub(text, mask_message(message)[1])


set_redactor(MessageRedactor())


class MessageSealer(Sealer):
    """The platform's :class:`~pygigo.adapters.base.Sealer`: signs with this process's keys."""

    def reseal(self, message: dramatiq.Message[Any], options: dict[str, Any]) -> dramatiq.Message[Any]:
        from .guard import reseal  # the guard imports this module

        return reseal(message, options)


set_sealer(MessageSealer())


class _MessageLogFilter(logging.Filter):
    """Dramatiq logs a failed or skipped message with its arguments and the traceback. An
    envelope's arguments are the request (body, forwarded credentials) or the call's: log its
    id instead; mask another message's sensitive arguments; scrub the traceback of the
    secret values found."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.args, tuple):
            return True
        found: set[str] = set()
        shown = []
        for arg in record.args:
            actor_name = getattr(arg, "actor_name", None)
            if actor_name is None:
                shown.append(arg)
                continue
            masked, values = mask_message(arg)
            found |= values
            envelope = actor_name == ENVELOPE_ACTOR
            shown.append(f"{ENVELOPE_ACTOR}(id={getattr(arg, 'message_id', '?')})" if envelope else masked)
        record.args = tuple(shown)
        if found and record.exc_info:
            # Formatters print exc_text when set, instead of formatting the exception again.
            record.exc_text = redaction.scrub(logging.Formatter().formatException(record.exc_info), found)
        return True


class _ActorLogFilter(logging.Filter):
    """Dramatiq's actors log their arguments at DEBUG ("Received args=…"): mask them as the
    message being processed (which the guard records) masks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = _state.message
        if message is not None and isinstance(record.args, tuple) and len(record.args) == 2:
            masked, _ = mask_message(message)
            if masked is not message:
                record.args = (masked.args, masked.kwargs)
        return True


logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_MessageLogFilter())
#: Added to the logger of every actor Pygigo declares (each actor logs under its own name).
ACTOR_LOG_FILTER = _ActorLogFilter()


class UnknownFunction(EnvelopeError):
    """The envelope names a function this worker has not loaded (never retried)."""


class InvocationError(PygigoError):
    """Base class of ``Function.invoke`` outcomes other than a result."""

    def __init__(self, message: str, invocation_id: str) -> None:
        super().__init__(message)
        self.invocation_id = invocation_id


class InvocationFailed(InvocationError):
    """The function failed (after its retries) or the invocation was cancelled."""


class InvocationTimeout(InvocationError, TimeoutError):
    """The invocation did not finish within ``wait`` seconds (it may still run later)."""


class _State(threading.local):
    """What the guard verified for the message this worker thread is processing."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        #: The message being processed (for log filters), set by the guard.
        self.message: Any = None
        self.sealed: str | None = None
        self.envelope: Envelope | None = None
        self.result: Any = None
        #: Why the guard refused the message (None: it did not).
        self.refusal: str | None = None


_state = _State()


def current() -> _State:
    """This thread's view of the envelope message being processed (read-only for callers)."""
    return _state


# -- hooks ----------------------------------------------------------------------------------

HttpRunner = Callable[["Function[..., Any]", Envelope], Any]
Invoker = Callable[["Function[..., Any]", tuple[Any, ...], dict[str, Any], "float | None"], Any]
_http_runner: HttpRunner | None = None
_invoker: Invoker | None = None


def set_http_runner(runner: HttpRunner) -> None:
    """Install what runs a function for an ``http`` envelope; it returns a JSON value."""
    global _http_runner
    _http_runner = runner


def set_invoker(invoker: Invoker) -> None:
    """Install what backs ``Function.invoke`` (record, enqueue, wait)."""
    global _invoker
    _invoker = invoker


def get_invoker() -> Invoker:
    if _invoker is None:
        settings.ensure_django()  # a plain process: the installed app registers the invoker
    if _invoker is None:
        raise ConfigurationError(
            "fn.invoke() records invocations in the Django database: add "
            "'pygigo.django_site.apps.PygigoConfig' to INSTALLED_APPS (or use fn.send())."
        )
    return _invoker


# -- sending --------------------------------------------------------------------------------


def envelope_message(envelope: Envelope, function: Function[..., Any]) -> dramatiq.Message[Any]:
    """The Dramatiq message carrying ``envelope`` (sealed now) to ``function``'s queue.

    The message id is the envelope id (as a UUID string), so logs on both sides agree.
    """
    return sealed_message(envelope, function)[2]


def sealed_message(
    envelope: Envelope, function: Function[..., Any]
) -> tuple[dict[str, Any], bytes, dramatiq.Message[Any]]:
    """:func:`envelope_message`, after ``envelope.to_dict()`` and its canonical JSON (what was
    signed): a caller that keeps the envelope need not serialise it again."""
    data = envelope.to_dict()
    payload = canonical_json(data)
    sealed = settings.signer().seal(payload).decode("utf-8")
    return data, payload, wire_message(sealed, envelope.id, function.queue, message_options(function))


def message_options(function: Function[..., Any] | None) -> dict[str, Any]:
    """The function's Dramatiq options, carried per message (the envelope actor has none)."""
    if function is None:
        return {}
    options = function.options.actor_options()
    if function.options.priority and function._supports_priority:
        options["broker_priority"] = function.options.priority
    return options


def wire_message(sealed: str, envelope_id: str, queue: str, options: dict[str, Any]) -> dramatiq.Message[Any]:
    """A message for an already sealed envelope (the outbox relay resends these)."""
    return dramatiq.Message(
        queue_name=queue,
        actor_name=ENVELOPE_ACTOR,
        args=(sealed,),
        kwargs={},
        options=options,
        message_id=str(uuid.UUID(envelope_id)),
    )


def bind(broker: dramatiq.Broker) -> None:
    """Declare the envelope actor on ``broker`` (idempotent; called by ``runtime.set_broker``)."""
    if ENVELOPE_ACTOR not in broker.actors:
        actor = dramatiq.Actor(
            _run_envelope,
            broker=broker,
            actor_name=ENVELOPE_ACTOR,
            queue_name="default",
            priority=0,
            # Never retry what can never succeed: an unknown function, a bad envelope, or
            # arguments that do not fit the function.
            options={"throws": (EnvelopeError, BadArguments)},
        )
        actor.logger.addFilter(ACTOR_LOG_FILTER)


# -- running --------------------------------------------------------------------------------


def verify_sealed(sealed: Any) -> Envelope:
    if not isinstance(sealed, str):
        raise EnvelopeError("the envelope message's argument is not sealed envelope text")
    # Deadline checked separately (now=0): an expired but authentic envelope is still
    # trusted enough to report *which* invocation expired.
    return verify(parse_json(sealed), settings.signing_keys(), now=0.0)


def _run_envelope(sealed: str) -> None:
    """The envelope actor: run the named function; the result goes to the thread state
    (not returned, so Dramatiq does not warn about a missing Results middleware)."""
    envelope = _state.envelope if _state.sealed == sealed else None
    if envelope is None:  # called outside a guarded worker: verify here
        envelope = verify_sealed(sealed)
    function = registry.get(envelope.function)
    if function is None:
        raise UnknownFunction(
            f"no function named {envelope.function!r} is loaded on this worker; start it with the "
            "module that defines it"
        )
    if envelope.kind == "http":
        if _http_runner is None:
            raise ConfigurationError("no HTTP runner installed: is the Pygigo Django app installed?")
        _state.result = _http_runner(function, envelope)
    else:
        _state.result = function.run(*envelope.args, **envelope.kwargs)


def will_retry(broker: dramatiq.Broker, message: Any, exception: BaseException | None) -> bool:
    """Whether Dramatiq's Retries middleware will re-enqueue ``message`` after ``exception``
    (same rule, evaluated before it runs: trackers see ``after_*`` hooks first)."""
    if exception is None or message.failed:
        return False
    actor = broker.get_actor(message.actor_name)
    throws = message.options.get("throws") or actor.options.get("throws")
    if throws and isinstance(exception, throws):
        return False
    limit = max_retries(broker, message)
    return limit is None or message.options.get("retries", 0) < limit


def max_retries(broker: dramatiq.Broker, message: Any) -> int | None:
    """The message's retry budget as Dramatiq's Retries middleware reads it (None: unlimited).
    A message may run ``max_retries + 1`` times, counting runs its worker died in."""
    actor = broker.get_actor(message.actor_name)
    limit = message.options.get("max_retries", actor.options.get("max_retries", 20))
    return None if limit is None else int(limit)

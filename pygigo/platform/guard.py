"""Every message signed, every message checked: the trust boundary of a worker.

Whoever can write to the broker must not be able to run a function, pick its arguments or
change how it runs. So every message a Pygigo process enqueues (``fn.send``, ``send_many``,
schedules, tracked and HTTP invocations, Dramatiq's own retries, pipelines and callbacks) is
signed where they all meet: :class:`MessageGuard`'s ``before_enqueue`` hook, which every
adapter runs just before it encodes the message.

The signature (option ``pygigo_sig``: ``<key id>:<HMAC-SHA256 hex>``, first key of
:func:`settings.signing_keys`) covers the message id and timestamp, the canonical queue, the
actor, the arguments and every option except those brokers change in flight
(:data:`UNSIGNED_OPTIONS`): so time limit, retries, age, callbacks and pipeline targets
are signed too. It also covers ``pygigo_exp``, the epoch-ms expiry: due time plus
``PYGIGO_MESSAGE_TTL_S``. These settings are read once per process (and again when a test
overrides a setting): rotating keys means restarting. A worker re-signs what it re-enqueues itself (a retry, the next
pipeline step), since those derive from a message it verified.

On the worker, the guard is the first middleware, so nothing else acts on a message first:

* an unsigned, wrongly signed or expired message is failed and skipped (dead-lettered,
  never run, its callbacks never fire), the reason logged and stuffed into the message for
  the adapters that keep one with the dead letter. Plain messages are accepted only on the
  queues named in ``PYGIGO_UNSIGNED_QUEUES``;
* a message Dramatiq holds in memory until its ``eta`` is checked when it is received, and
  if refused is marked (``pygigo_refused``) so moving it to its queue does not sign it;
* an envelope message is then verified as an envelope (its own signature, its deadline) and
  the envelope kept in :func:`invocations.current` for the actor and storage middleware.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import time
from typing import Any, NoReturn

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware, SkipMessage

from ..adapters.base import PygigoError
from . import invocations, settings
from .envelope import EnvelopeError, key_id

logger = logging.getLogger("pygigo.guard")

SIGNATURE = "pygigo_sig"
EXPIRES = "pygigo_exp"
REFUSED = "pygigo_refused"
#: Options a broker or consumer changes on a message without enqueueing it again.
UNSIGNED_OPTIONS = frozenset({SIGNATURE, REFUSED, "eta", "redis_message_id"})


class MessageRefused(Exception):
    """Why a message is not run. ``authentic``: correctly signed (e.g. merely expired)."""

    def __init__(self, reason: str, *, authentic: bool = False) -> None:
        super().__init__(reason)
        self.authentic = authentic


def _signed_bytes(message: Any) -> bytes:
    options = {k: v for k, v in message.options.items() if k not in UNSIGNED_OPTIONS}
    fields = [
        message.message_id,
        message.message_timestamp,
        q_name(message.queue_name),
        message.actor_name,
        message.args,
        message.kwargs,
        options,
    ]
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: hmac.HMAC, message: Any) -> str:
    mac = key.copy()  # cheaper than keying a new HMAC for every message
    mac.update(_signed_bytes(message))
    return mac.hexdigest()


@dataclasses.dataclass(frozen=True)
class _Config:
    """The settings the guard reads on every message, read once: ``keys`` are (id, keyed
    HMAC) pairs, newest first."""

    keys: tuple[tuple[str, hmac.HMAC], ...]
    ttl_ms: int
    unsigned_queues: frozenset[str]


@settings.cached
def _current() -> _Config:
    keys = settings.signing_keys()
    return _Config(
        keys=tuple((key_id(key), hmac.new(key.encode(), digestmod=hashlib.sha256)) for key in keys),
        ttl_ms=int(settings.message_ttl_s() * 1000),
        unsigned_queues=settings.unsigned_queues(),
    )


def sign(message: Any, delay_ms: int | None = None) -> None:
    """Sign ``message`` in place (expiry: due time plus the message TTL)."""
    config = _current()
    kid, key = config.keys[0]
    message.options[EXPIRES] = int(time.time() * 1000 + (delay_ms or 0) + config.ttl_ms)
    message.options[SIGNATURE] = f"{kid}:{_mac(key, message)}"


def check(message: Any) -> None:
    """Raise :class:`MessageRefused` unless ``message`` may run here."""
    config = _current()
    options = message.options
    if REFUSED in options:
        raise MessageRefused(str(options[REFUSED]))
    signature = options.get(SIGNATURE)
    if signature is None:
        if q_name(message.queue_name) in config.unsigned_queues:
            return
        raise MessageRefused(
            f"unsigned message for {message.actor_name!r} on queue {message.queue_name!r}: only "
            "Pygigo-signed messages run (list the queue in PYGIGO_UNSIGNED_QUEUES to accept plain ones)"
        )
    kid, _, mac = str(signature).partition(":")
    keys = [key for known, key in config.keys if hmac.compare_digest(known, kid)]
    if not keys:
        raise MessageRefused(f"message signed with an unknown key id {kid!r} (rotated out, or forged)")
    # Two keys may share a 32-bit id by accident; accept if any of them matches.
    if not any(hmac.compare_digest(_mac(key, message), mac) for key in keys):
        raise MessageRefused("message signature does not match its content (forged or altered)")
    expires = options.get(EXPIRES)
    if not isinstance(expires, int) or expires < time.time() * 1000:
        raise MessageRefused(f"message expired (pygigo_exp={expires!r})", authentic=True)


def reseal(message: dramatiq.Message[Any], options: dict[str, Any]) -> dramatiq.Message[Any]:
    """See :meth:`pygigo.adapters.base.Sealer.reseal`: verified as stored (an expired message
    is fine, that is why it is being requeued), then changed and signed afresh."""
    try:
        check(message)
    except MessageRefused as exc:
        if not exc.authentic:
            raise PygigoError(f"message {message.message_id} cannot be signed again: {exc}") from None
    changed = message.copy(options=options)
    if SIGNATURE not in message.options:
        return changed  # a message of an unsigned queue (PYGIGO_UNSIGNED_QUEUES) stays unsigned
    sign(changed)
    return changed


def refuse(message: Any, reason: str) -> NoReturn:
    """Fail and skip ``message`` from a ``before_process_message`` hook: dead-lettered with
    ``reason``, never run, never retried, no callback fired."""
    invocations.current().refusal = reason
    logger.error("Refusing message %s (%s): %s", message.message_id, message.actor_name, reason)
    message.fail()
    raise SkipMessage(reason)


class MessageGuard(Middleware):
    """Signs what this process enqueues; refuses what it must not run (module docstring)."""

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if REFUSED not in message.options:
            sign(message, delay)

    def before_delay_message(self, broker: dramatiq.Broker, message: Any) -> None:
        try:
            check(message)
        except MessageRefused as exc:
            message.options[REFUSED] = str(exc)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        state = invocations.current()
        state.reset()
        state.message = message
        try:
            check(message)
        except MessageRefused as exc:
            if exc.authentic and message.actor_name == invocations.ENVELOPE_ACTOR:
                self._verify_envelope(message)  # so storage can mark the invocation dead
            refuse(message, str(exc))
        if message.actor_name == invocations.ENVELOPE_ACTOR:
            envelope = self._verify_envelope(message)
            if envelope.deadline is not None and time.time() > envelope.deadline:
                late = time.time() - envelope.deadline
                refuse(message, f"envelope expired {late:.3f}s before it could start")

    def _verify_envelope(self, message: Any) -> Any:
        state = invocations.current()
        sealed = message.args[0] if len(message.args) == 1 else None
        try:
            envelope = invocations.verify_sealed(sealed)
        except EnvelopeError as exc:
            refuse(message, str(exc))
        state.sealed, state.envelope = sealed, envelope
        return envelope

    # The guard comes first, so its after_* hooks run last (Dramatiq emits them in reverse):
    # storage middleware still sees the verified envelope, then it is forgotten.
    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        # A message this worker verified and now dead-letters was changed on the way (Retries
        # counted the failure and kept its traceback): signed again, as a retry is, so the dead
        # letter still verifies and can be requeued. A refused message never gets here.
        if message.failed and SIGNATURE in message.options:
            sign(message)
        invocations.current().reset()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        invocations.current().reset()

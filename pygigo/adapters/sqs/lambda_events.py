"""Run an SQS event batch (AWS Lambda's SQS event source) through Dramatiq's middleware.

The contract of :func:`handle_event`: every record is run as a Dramatiq worker would run it —
``process_message`` signals, so Retries, TimeLimit, AgeLimit, Callbacks and any
``PYGIGO_MIDDLEWARE`` apply — and the answer names in ``batchItemFailures`` only the records
SQS should deliver again (the event source mapping needs ``ReportBatchItemFailures``):

=====================================  ==========================================  ===========
record outcome                         what happens                                reported?
=====================================  ==========================================  ===========
succeeded                              Lambda deletes it                           no
failed, retry scheduled                Retries sent a new delayed message          no
failed for good / unknown function     moved to the dead-letter queue              no
not yet due (delay beyond 15 min)      sent again with the next DelaySeconds hop   no
undecodable body                       comes back; SQS's redrive dead-letters it   yes
a send or the dead-lettering failed    comes back (at-least-once)                  yes
not started, Lambda time running out   comes back                                  yes
=====================================  ==========================================  ===========

Records run one after another in the invoking thread (Lambda gives a batch one vCPU slice;
concurrency comes from Lambda running more instances).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dramatiq.broker import MessageProxy
from dramatiq.common import current_millis, q_name
from dramatiq.errors import ActorNotFound
from dramatiq.middleware import SkipMessage

from .consumer import decode, without_eta

if TYPE_CHECKING:
    from .broker import SQSBroker

logger = logging.getLogger("pygigo.adapters.sqs.lambda")

#: Do not start a record with less Lambda time than this left.
MIN_TIME_LEFT_MS = 2_000


def handle_event(
    broker: SQSBroker, event: Mapping[str, Any], *, time_left_ms: Callable[[], int] | None = None
) -> dict[str, list[dict[str, str]]]:
    """Run ``event["Records"]``; return ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``.

    ``time_left_ms`` is the Lambda context's ``get_remaining_time_in_millis``: records not
    started in time are reported back instead of being cut off by the Lambda timeout.
    """
    boot(broker)
    failures: list[dict[str, str]] = []
    for record in event.get("Records", []):
        if time_left_ms is not None and time_left_ms() < MIN_TIME_LEFT_MS:
            ok = False
        else:
            try:
                ok = run_record(broker, record)
            except Exception:
                logger.exception(
                    "SQS record %s could not be handled; it will come back.", record.get("messageId")
                )
                ok = False
        if not ok:
            failures.append({"itemIdentifier": str(record["messageId"])})
    return {"batchItemFailures": failures}


def boot(broker: SQSBroker) -> None:
    """Once per broker (per Lambda container): the process_boot signal, as a Dramatiq worker
    process would emit it (TimeLimit starts its watchdog thread there)."""
    if not getattr(broker, "_lambda_booted", False):
        broker.emit_after("process_boot")
        broker._lambda_booted = True  # type: ignore[attr-defined]


def run_record(broker: SQSBroker, record: Mapping[str, Any]) -> bool:
    """Run one record; True when SQS may forget it (see the table in the module docstring)."""
    message = decode(record["body"])
    if message is None:
        logger.error(
            "SQS record %s is not a Dramatiq message; leaving it to the redrive policy.", record["messageId"]
        )
        return False
    queue_name = q_name(message.queue_name)
    eta = message.options.get("eta")
    if isinstance(eta, int | float):
        remaining = int(eta - current_millis())
        if remaining >= 1000:
            entry = {"MessageBody": record["body"], "DelaySeconds": broker.hop_seconds(remaining)}
            with broker.translate_errors():
                broker.send_batch(queue_name, [entry])
            return True
        if remaining > 0:
            time.sleep(remaining / 1000)  # clock skew between sender and Lambda: under a second
        message = without_eta(message)
    proxy = MessageProxy(message)
    process(broker, proxy)
    if broker.take_send_failure():
        return False
    if proxy.failed:
        broker.emit_before("nack", proxy)
        reason = repr(proxy._exception) if proxy._exception else "failed"
        broker.dead_letter(queue_name, message.encode().decode("utf-8"), reason)
        broker.emit_after("nack", proxy)
    else:
        broker.emit_before("ack", proxy)
        broker.emit_after("ack", proxy)
    return True


def process(broker: SQSBroker, message: MessageProxy) -> None:
    """Dramatiq's ``WorkerThread.process_message``, minus the work queue."""
    if message.actor_name not in broker.actors:
        logger.error("SQS record for unknown function %r: dead-lettered.", message.actor_name)
        message.fail()
        message.stuff_exception(ActorNotFound(message.actor_name))
        return
    try:
        broker.emit_before("process_message", message)
        result = None
        if not message.failed:
            actor = broker.get_actor(message.actor_name)
            result = actor(*message.args, **message.kwargs)
        broker.emit_after("process_message", message, result=result)
    except SkipMessage as exc:
        if message.failed:  # as Dramatiq's worker: the reason goes with the dead letter
            message.stuff_exception(exc)
        broker.emit_after("skip_message", message)
    except BaseException as exc:  # as Dramatiq's worker: TimeLimitExceeded is a BaseException
        message.stuff_exception(exc)
        logger.error(
            "Function %r failed on message %s.", message.actor_name, message.message_id, exc_info=True
        )
        broker.emit_after("process_message", message, exception=exc)

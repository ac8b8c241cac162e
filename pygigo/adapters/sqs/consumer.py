"""The SQS consumer: receive, hold, extend, acknowledge in batches.

Life of a received message:

* **received** with ``VisibilityTimeout = visibility_timeout_s`` (long poll of ``wait_time_s``),
  at most ``prefetch`` held at once (SQS has no prefetch of its own);
* **not yet due** (its ``eta`` is a second or more away, i.e. a delay longer than one
  DelaySeconds hop): sent again with the next hop's DelaySeconds, then deleted (send first:
  at-least-once);
* **held** while Dramatiq runs it: a keeper thread renews the visibility of every held
  message every ``visibility_timeout_s / 3`` (ChangeMessageVisibilityBatch), so a function that
  runs longer than the visibility timeout is not delivered to a second worker; if this process
  dies, renewals stop and SQS delivers the message again after the timeout;
* **acked**: its receipt handle joins a delete buffer the keeper flushes with
  DeleteMessageBatch within ~10 ms (or at once when ten are waiting, or on close);
* **nacked** (failed for good): sent to the dead-letter queue, then deleted;
* **requeued** (worker stopping): ChangeMessageVisibility to 0, so another worker gets it now.

Thread safety: Dramatiq calls ``__next__``/``requeue``/``close`` from the consumer thread and
``ack``/``nack`` from worker threads; all shared state is under one condition variable.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import current_millis
from dramatiq.errors import DecodeError
from dramatiq.message import Message

from . import client as sqs

if TYPE_CHECKING:
    from .broker import SQSBroker

logger = logging.getLogger("pygigo.adapters.sqs")

#: How long an ack waits for company before its DeleteMessageBatch goes out.
ACK_LINGER_S = 0.01


class SQSMessage(MessageProxy):
    """A received message: the Dramatiq message plus its SQS receipt handle."""

    def __init__(self, message: Message[Any], receipt_handle: str, receive_count: int) -> None:
        super().__init__(message)
        self.receipt_handle = receipt_handle
        self.receive_count = receive_count


def decode(body: str) -> Message[Any] | None:
    try:
        return Message.decode(body.encode("utf-8"))
    except DecodeError:
        return None


def without_eta(message: Message[Any]) -> Message[Any]:
    options = {key: value for key, value in message.options.items() if key != "eta"}
    return dataclasses.replace(message, options=options)


class SQSConsumer(Consumer):
    def __init__(self, broker: SQSBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.timeout_s = timeout / 1000
        with broker.translate_errors():
            self.url, self.dlq_url = broker.queue_urls(queue_name)
        self._held: dict[str, SQSMessage] = {}
        self._ready: collections.deque[SQSMessage] = collections.deque()
        self._deletes: list[str] = []
        self._cond = threading.Condition()
        self._closing = False
        self._beat_every_s = broker.visibility_timeout_s / 3
        self._keeper = threading.Thread(
            target=self._keep, name=f"pygigo-sqs-keeper[{queue_name}]", daemon=True
        )
        self._keeper.start()

    # -- Dramatiq's consumer contract ---------------------------------------------------------
    def __next__(self) -> SQSMessage | None:
        with self._cond:
            if self._ready:
                return self._ready.popleft()
            room = self.prefetch - len(self._held)
            if room <= 0:
                # Full: wait for an ack rather than receive work nobody can take.
                self._cond.wait(timeout=self.timeout_s)
                return None
        with self.broker.translate_errors():
            received = self.broker.with_queue(self.queue_name, lambda url, _dlq: self._receive(url, room))
            self._sort(received)
        with self._cond:
            return self._ready.popleft() if self._ready else None

    def ack(self, message: MessageProxy) -> None:
        handle = self._handle(message)
        if self.broker.take_send_failure():
            # A send (typically the Retries middleware's re-enqueue) failed while this message
            # ran: keep the original. Its visibility lapses and SQS delivers it again.
            logger.warning("Not deleting %s: a send failed while it ran; SQS will redeliver it.", message)
            with self._cond:
                self._held.pop(handle, None)
            return
        self._delete_later(handle)

    def nack(self, message: MessageProxy) -> None:
        reason = repr(message._exception) if getattr(message, "_exception", None) else "failed"
        self.broker.dead_letter(self.queue_name, message._message.encode().decode("utf-8"), reason)
        self._delete_later(self._handle(message))

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        handles = [self._handle(message) for message in messages]
        with self._cond:
            for handle in handles:
                self._held.pop(handle, None)
            returned = set(handles)
            self._ready = collections.deque(m for m in self._ready if m.receipt_handle not in returned)
        with self.broker.translate_errors():
            self._change_visibility(handles, 0)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            # Received but never handed to Dramatiq: give them back at once.
            unstarted = [message.receipt_handle for message in self._ready]
            self._ready.clear()
            self._cond.notify_all()
        self._keeper.join(timeout=30)
        if unstarted:
            with self.broker.translate_errors():
                self._change_visibility(unstarted, 0)

    # -- receiving ------------------------------------------------------------------------------
    def _receive(self, url: str, room: int) -> list[dict[str, Any]]:
        response = self.broker.client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(room, sqs.MAX_BATCH),
            WaitTimeSeconds=self.broker.wait_time_s,
            VisibilityTimeout=self.broker.visibility_timeout_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(response.get("Messages", []))

    def _sort(self, received: list[dict[str, Any]]) -> None:
        """Hold what is due; re-delay what is not; dead-letter what cannot be decoded."""
        redelay: list[dict[str, Any]] = []
        done: list[str] = []
        now = current_millis()
        for raw in received:
            handle = raw["ReceiptHandle"]
            message = decode(raw["Body"])
            if message is None:
                logger.error(
                    "Undecodable message %s on %r: moved to the dead letters.",
                    raw["MessageId"],
                    self.queue_name,
                )
                self.broker.dead_letter(self.queue_name, raw["Body"], "undecodable")
                done.append(handle)
                continue
            eta = message.options.get("eta")
            if isinstance(eta, int | float) and eta - now >= 1000:
                entry = {"MessageBody": raw["Body"], "DelaySeconds": self.broker.hop_seconds(int(eta - now))}
                redelay.append(entry)
                done.append(handle)
                continue
            if isinstance(eta, int | float) and eta <= now:
                # Due: run it now (a leftover eta would make Dramatiq hold it and re-send it).
                message = without_eta(message)
            # An eta under a second away stays: Dramatiq's in-memory delay handles the remainder.
            count = int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            proxy = SQSMessage(message, handle, count)
            with self._cond:
                self._held[handle] = proxy
                self._ready.append(proxy)
        if redelay:
            self.broker.send_batch(self.queue_name, redelay)
        for handle in done:
            self._delete_later(handle)

    # -- the keeper: delete batches and visibility heartbeats ----------------------------------
    def _handle(self, message: MessageProxy) -> str:
        handle: str = message.receipt_handle
        return handle

    def _delete_later(self, handle: str) -> None:
        with self._cond:
            self._held.pop(handle, None)
            self._deletes.append(handle)
            self._cond.notify_all()

    def _keep(self) -> None:
        next_beat = time.monotonic() + self._beat_every_s
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closing or bool(self._deletes),
                    timeout=max(0.0, next_beat - time.monotonic()),
                )
                closing, waiting = self._closing, len(self._deletes)
            if waiting and waiting < sqs.MAX_BATCH and not closing:
                time.sleep(ACK_LINGER_S)  # let concurrent acks join this batch
            try:
                self._flush_deletes()
                if time.monotonic() >= next_beat and not closing:
                    next_beat = time.monotonic() + self._beat_every_s
                    with self._cond:
                        held = list(self._held)
                    self._change_visibility(held, self.broker.visibility_timeout_s)
            except Exception as exc:
                # Deletes stay queued for the next round; SQS errors are transient or mean the
                # messages will simply be delivered again (at-least-once).
                logger.warning("SQS keeper for %r: %s", self.queue_name, exc)
                if closing:
                    return
                time.sleep(0.5)
            if closing:
                return

    def _flush_deletes(self) -> None:
        with self._cond:
            handles, self._deletes = self._deletes, []
        try:
            for batch in sqs.chunks(handles):
                entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(batch)]
                response = self.broker.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
                for failure in response.get("Failed", []):
                    # Usually an expired receipt handle: the message was redelivered and will run again.
                    logger.warning(
                        "SQS did not delete a message on %r: %s", self.queue_name, failure.get("Message")
                    )
                handles = handles[len(batch) :]
        finally:
            if handles:
                with self._cond:
                    self._deletes[:0] = handles

    def _change_visibility(self, handles: list[str], timeout_s: int) -> None:
        for batch in sqs.chunks(handles):
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": timeout_s}
                for i, handle in enumerate(batch)
            ]
            response = self.broker.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            for failure in response.get("Failed", []):
                logger.info("SQS visibility change failed on %r: %s", self.queue_name, failure.get("Message"))

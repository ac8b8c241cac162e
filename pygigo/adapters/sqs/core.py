"""The Dramatiq half of the SQS broker: queues, sends, delays, batches (no URL, no Pygigo checks)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import botocore.exceptions
import dramatiq
from dramatiq.common import current_millis, q_name
from dramatiq.middleware import Middleware

from ..base import BrokerError, CapabilityError, MessageTooLarge
from . import client as sqs

logger = logging.getLogger("pygigo.adapters.sqs")

# AWS raised SQS's limit from 256 KiB to 1 MiB in August 2025 (messages and whole batches);
# queues this adapter creates ask for it explicitly (MaximumMessageSize).
MAX_MESSAGE_BYTES = 1024 * 1024
MAX_NATIVE_DELAY_S = 15 * 60
_EXISTS_CODES = frozenset({"QueueAlreadyExists", "QueueNameExists"})
_SEND_ATTEMPTS = 3


class SQSCore(dramatiq.Broker):
    """Dramatiq-level SQS broker. Thread-safe: one boto3 client, built under a lock and shared
    (botocore clients may be *used* from many threads); queue URLs are resolved once, under a lock.
    """

    #: Longest DelaySeconds used for one hop. A longer delay is re-delayed in hops of this size
    #: until the message's ``eta``; tests shorten it instead of waiting 15 minutes.
    redelay_step_s: int = MAX_NATIVE_DELAY_S
    max_message_bytes: int = MAX_MESSAGE_BYTES

    def __init__(
        self,
        *,
        middleware: list[Middleware] | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "",
        visibility_timeout_s: int = 30,
        wait_time_s: int = 1,
        max_receive_count: int = 5,
        create_queues: bool = True,
    ) -> None:
        super().__init__(middleware)
        self.queues: dict[str, None] = {}
        self.prefix = prefix
        self.visibility_timeout_s = visibility_timeout_s
        self.wait_time_s = wait_time_s
        self.max_receive_count = max_receive_count
        self.create_queues = create_queues
        self.endpoint = endpoint_url or f"sqs.{region or '(default region)'}.amazonaws.com"
        self._client = sqs.LazyClient(
            lambda: sqs.make_client(region=region, endpoint_url=endpoint_url, read_timeout_s=wait_time_s + 20)
        )
        self._urls: dict[str, tuple[str, str]] = {}
        self._urls_lock = threading.Lock()
        self._local = threading.local()

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        return self._client.get()

    def close(self) -> None:
        self._client.close()

    def queue_urls(self, queue_name: str) -> tuple[str, str]:
        """(queue URL, dead-letter queue URL), created on first use when ``create_queues``."""
        urls = self._urls.get(queue_name)
        if urls is not None:
            return urls
        with self._urls_lock:
            if queue_name not in self._urls:
                self._urls[queue_name] = self._resolve(queue_name)
            return self._urls[queue_name]

    def forget_queue(self, queue_name: str) -> None:
        """Drop a cached URL (the queue was deleted behind our back): the next use resolves it again."""
        with self._urls_lock:
            self._urls.pop(queue_name, None)

    def _resolve(self, queue_name: str) -> tuple[str, str]:
        name = sqs.sqs_queue_name(self.prefix, queue_name)
        dlq_name = name + sqs.DLQ_SUFFIX
        if not self.create_queues:
            return self._get_url(name), self._get_url(dlq_name)
        dlq_url = self._create(
            dlq_name,
            {
                "MessageRetentionPeriod": str(sqs.DLQ_RETENTION_S),
                "MaximumMessageSize": str(MAX_MESSAGE_BYTES),
            },
        )
        arn = self.client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        # The redrive policy is what turns "a message that kills its workers" into a dead letter:
        # SQS moves it once it has been received max_receive_count times without being deleted.
        redrive = {"deadLetterTargetArn": arn, "maxReceiveCount": str(self.max_receive_count)}
        attributes = {
            "VisibilityTimeout": str(self.visibility_timeout_s),
            "RedrivePolicy": json.dumps(redrive),
            "MaximumMessageSize": str(MAX_MESSAGE_BYTES),
        }
        return self._create(name, attributes), dlq_url

    def _create(self, name: str, attributes: dict[str, str]) -> str:
        try:
            return str(self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
        except botocore.exceptions.ClientError as exc:
            if sqs.error_code(exc) not in _EXISTS_CODES:
                raise
        # It exists with other attributes (made by infrastructure code, or an older URL): use it
        # as it is rather than fight over its configuration.
        logger.warning("SQS queue %r exists with other attributes; using it unchanged.", name)
        return self._get_url(name)

    def _get_url(self, name: str) -> str:
        try:
            return str(self.client.get_queue_url(QueueName=name)["QueueUrl"])
        except botocore.exceptions.ClientError as exc:
            raise sqs.translate(exc, endpoint=self.endpoint, queue=name) from exc

    def with_queue(self, queue_name: str, call: Callable[[str, str], Any]) -> Any:
        """``call(url, dlq_url)``, resolving the queue again once if it vanished meanwhile."""
        for attempt in (1, 2):
            url, dlq_url = self.queue_urls(queue_name)
            try:
                return call(url, dlq_url)
            except botocore.exceptions.ClientError as exc:
                if attempt == 1 and sqs.error_code(exc) in sqs.QUEUE_MISSING_CODES:
                    self.forget_queue(queue_name)
                    continue
                raise sqs.translate(exc, endpoint=self.endpoint, queue=queue_name) from exc
        raise AssertionError("unreachable")

    # -- Dramatiq's broker contract ----------------------------------------------------------
    def declare_queue(self, queue_name: str) -> None:
        """Record the queue; no I/O (it is created or looked up on first use). Emits no delay
        queue: delays are SQS's own DelaySeconds on the same queue, so a worker needs no ``.DQ``."""
        name = q_name(queue_name)
        if name not in self.queues:
            self.emit_before("declare_queue", name)
            self.queues[name] = None
            self.emit_after("declare_queue", name)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        queue_name = q_name(message.queue_name)
        self.declare_queue(queue_name)
        sent, params = self.prepare(message, delay)
        with self._noting_send_failure():
            self.with_queue(queue_name, lambda url, _dlq: self.client.send_message(QueueUrl=url, **params))
        self.emit_after("enqueue", sent, delay)
        return sent

    def prepare(self, message: dramatiq.Message[Any], delay_ms: int | None) -> tuple[Any, dict[str, Any]]:
        """The message as it will be sent and its SendMessage parameters. Checks the size (no I/O).
        Emits ``before_enqueue`` before encoding, so what middleware adds (a signature) is sent.

        A delayed message carries Dramatiq's ``eta`` (epoch ms) and is sent with DelaySeconds
        rounded *up* to whole seconds (SQS's granularity: never early), capped at one step.
        """
        params: dict[str, Any] = {}
        if delay_ms:
            message = message.copy(
                queue_name=q_name(message.queue_name), options={"eta": current_millis() + delay_ms}
            )
            params["DelaySeconds"] = self.hop_seconds(delay_ms)
        self.emit_before("enqueue", message, delay_ms)
        body = message.encode()
        if len(body) > self.max_message_bytes:
            raise MessageTooLarge(len(body), self.max_message_bytes, "sqs")
        try:
            params["MessageBody"] = body.decode("utf-8")
        except UnicodeDecodeError:
            raise CapabilityError(
                "SQS message bodies are text; the configured Dramatiq encoder produced binary. "
                "Use Dramatiq's JSON encoder (Pygigo's default)."
            ) from None
        return message, params

    def hop_seconds(self, remaining_ms: int) -> int:
        """DelaySeconds for the next hop towards an ETA ``remaining_ms`` away."""
        return max(0, min(math.ceil(remaining_ms / 1000), self.redelay_step_s, MAX_NATIVE_DELAY_S))

    def send_batch(self, queue_name: str, entries: Sequence[dict[str, Any]]) -> None:
        """SendMessageBatch ``entries`` (SendMessage parameters), at most 10 and 1 MiB per call.

        Entries SQS fails for its own reasons (throttling, internal errors) are sent again;
        an entry refused as the sender's fault, or still failing after retries, raises
        BrokerError naming how many were not sent.
        """
        with self._noting_send_failure():
            for batch in self._batches(entries):
                pending = {str(i): entry for i, entry in enumerate(batch)}
                for attempt in range(_SEND_ATTEMPTS):
                    request = [{"Id": key, **entry} for key, entry in pending.items()]

                    def send(url: str, _dlq: str, request: list[dict[str, Any]] = request) -> Any:
                        return self.client.send_message_batch(QueueUrl=url, Entries=request)

                    response = self.with_queue(queue_name, send)
                    failed = response.get("Failed", [])
                    if any(item.get("SenderFault") for item in failed):
                        raise BrokerError(
                            f"SQS refused {len(failed)} message(s) for {queue_name!r}: {failed}"
                        )
                    pending = {item["Id"]: pending[item["Id"]] for item in failed}
                    if not pending:
                        break
                    time.sleep(0.1 * 2**attempt)
                if pending:
                    raise BrokerError(
                        f"SQS did not accept {len(pending)} message(s) for {queue_name!r} after "
                        f"{_SEND_ATTEMPTS} attempts; the others were sent."
                    )

    def _batches(self, entries: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        # A batch's total payload has the same limit as one message.
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            entry_size = len(entry["MessageBody"].encode())
            if batch and (len(batch) == sqs.MAX_BATCH or size + entry_size > self.max_message_bytes):
                yield batch
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            yield batch

    # -- "did a send fail while this message ran?" ---------------------------------------------
    # Dramatiq's Retries middleware enqueues the retry inside emit_after, which logs and swallows
    # errors; the original would then be acked and the call lost. Remembering the failure per
    # thread lets the consumer (and the Lambda handler) keep the original instead.
    @contextlib.contextmanager
    def _noting_send_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._local.send_failed = True
            raise

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        if signal == "process_message":
            self._local.send_failed = False
        super().emit_before(signal, *args, **kwargs)

    def take_send_failure(self) -> bool:
        """True once if a send failed on this thread since its current message started."""
        failed = bool(getattr(self._local, "send_failed", False))
        self._local.send_failed = False
        return failed

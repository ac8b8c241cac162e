"""The SQS broker: Pygigo's adapter contract on top of :class:`.core.SQSCore` (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Self

import botocore.exceptions
import dramatiq
from dramatiq.common import q_name
from dramatiq.errors import QueueJoinTimeout, QueueNotFound
from dramatiq.middleware import Middleware

from ..base import (
    BrokerURL,
    Capabilities,
    ConfigurationError,
    Option,
    PygigoBroker,
    PygigoError,
    QueueStats,
    parse_bool,
)
from . import client as sqs
from .consumer import SQSConsumer
from .core import MAX_MESSAGE_BYTES, SQSCore


def _ranged(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _endpoint_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _prefix(value: str) -> str:
    if value and not value.replace("-", "").replace("_", "").isalnum():
        raise ValueError("use letters, digits, '-' and '_' only")
    return value


class SQSBroker(PygigoBroker, SQSCore):
    scheme = "sqs"
    capabilities = Capabilities(max_message_bytes=MAX_MESSAGE_BYTES, text_bodies=True)
    url_options: ClassVar[dict[str, Option]] = {
        "region": Option(str, None, "AWS region (default: the AWS chain's, e.g. AWS_REGION)"),
        "endpoint_url": Option(_endpoint_url, None, "SQS endpoint, for emulators (moto, ElasticMQ)"),
        "prefix": Option(_prefix, "", "prepended to every SQS queue name"),
        "visibility_timeout_s": Option(
            _ranged(2, sqs.MAX_VISIBILITY_S), 30, "seconds a received message stays hidden"
        ),
        "wait_time_s": Option(_ranged(0, 20), 1, "long-poll wait of each receive, 0-20 s"),
        "max_receive_count": Option(_ranged(1, 1000), 5, "receives before SQS dead-letters a message"),
        "create_queues": Option(parse_bool, True, "create missing queues (false: they must exist)"),
    }
    driver_errors = sqs.DRIVER_ERRORS

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        if url.netloc or url.path not in ("", "/"):
            raise ConfigurationError(
                f"sqs:// takes no host or path (got {url.redacted!r}): use sqs://?region=…, and "
                f"endpoint_url=… for an emulator. Credentials come from the AWS chain, never the URL."
            )
        return cls(middleware=middleware, **dict(url.options))

    def translate(self, exc: BaseException) -> PygigoError:
        return sqs.translate(exc, endpoint=self.endpoint)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> SQSConsumer:
        """A consumer holding at most ``prefetch`` messages (see :mod:`.consumer`)."""
        if queue_name not in self.queues:
            raise QueueNotFound(queue_name)
        return SQSConsumer(self, queue_name, prefetch, timeout)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        """Send one message (SendMessage). ``delay`` in ms; any length (see ``redelay_step_s``)."""
        return super().enqueue(message, delay=delay)

    def enqueue_many(
        self, messages: Iterable[dramatiq.Message[Any]], *, delay: int | None = None
    ) -> list[dramatiq.Message[Any]]:
        """Send many messages with SendMessageBatch (10 per call). Every size is checked before
        any I/O. Not atomic: on error some messages may have been sent (at-least-once callers
        simply send again)."""
        prepared = [self.prepare(message, delay) for message in messages]
        by_queue: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        for sent, params in prepared:
            by_queue.setdefault(q_name(sent.queue_name), []).append((sent, params))
        with self.translate_errors():
            for queue_name, items in by_queue.items():
                self.declare_queue(queue_name)
                self.send_batch(queue_name, [params for _, params in items])
                for sent, _ in items:
                    self.emit_after("enqueue", sent, delay)
        return [sent for sent, _ in prepared]

    def ping(self) -> None:
        """Resolve (or create) every declared queue and read one attribute; with no queue
        declared, list queues. Raises BrokerUnavailable / QueueMissing / ConfigurationError."""
        with self.translate_errors():
            if not self.queues:
                self.client.list_queues(QueueNamePrefix=self.prefix, MaxResults=1)
            for queue_name in list(self.queues):
                self.with_queue(
                    queue_name,
                    lambda url, _dlq: self.client.get_queue_attributes(
                        QueueUrl=url, AttributeNames=["QueueArn"]
                    ),
                )

    def join(
        self, queue_name: str, min_successes: int = 2, idle_time: int = 100, *, timeout: int | None = None
    ) -> None:
        """Wait until ``queue_name`` has no message ready, delayed or in flight, as SQS's
        approximate counts say ``min_successes`` times in a row, ``idle_time`` ms apart (they
        are eventually consistent). Raises QueueJoinTimeout after ``timeout`` ms."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        successes = 0
        while successes < min_successes:
            if deadline is not None and time.monotonic() > deadline:
                raise QueueJoinTimeout(queue_name)
            with self.translate_errors():
                counts = self.with_queue(
                    q_name(queue_name),
                    lambda url, _dlq: self.client.get_queue_attributes(QueueUrl=url, AttributeNames=names),
                )["Attributes"]
            successes = successes + 1 if not any(int(counts.get(name, 0)) for name in names) else 0
            time.sleep(idle_time / 1000)

    def queue_stats(self, queue_name: str) -> QueueStats:
        """Approximate counts (SQS's own, eventually consistent on AWS): ready, delayed (including
        long delays between hops) and the dead-letter queue's messages.

        ``oldest_ready_age_s`` is None: SQS publishes the oldest message's age only as the
        CloudWatch metric ``ApproximateAgeOfOldestMessage`` (not through the SQS API), and
        peeking would count as a receive, moving messages toward the dead-letter queue. Scale
        on that CloudWatch metric instead."""

        def read(url: str, dlq_url: str) -> QueueStats:
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
            main = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            dead = self.client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=names[:1])["Attributes"]
            return QueueStats(
                ready=int(main.get(names[0], 0)),
                delayed=int(main.get(names[1], 0)),
                dead=int(dead.get(names[0], 0)),
            )

        with self.translate_errors():
            stats: QueueStats = self.with_queue(q_name(queue_name), read)
            return stats

    def flush(self, queue_name: str) -> None:
        """PurgeQueue the queue and its dead letters. AWS runs one purge a minute per queue (and
        takes up to 60 s): within that minute, the visible messages are received and deleted
        instead; delayed ones then stay."""

        def purge(url: str, dlq_url: str) -> None:
            for target in (url, dlq_url):
                try:
                    self.client.purge_queue(QueueUrl=target)
                except botocore.exceptions.ClientError as exc:
                    if "PurgeQueueInProgress" not in sqs.error_code(exc):
                        raise
                    self._drain(target)

        with self.translate_errors():
            self.with_queue(q_name(queue_name), purge)

    def _drain(self, url: str) -> None:
        while True:
            received = self.client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=sqs.MAX_BATCH, WaitTimeSeconds=0
            )
            messages = received.get("Messages", [])
            if not messages:
                return
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self.client.delete_message_batch(QueueUrl=url, Entries=entries)

    def flush_all(self) -> None:
        for queue_name in list(self.queues):
            self.flush(queue_name)

    def dead_letter(self, queue_name: str, body: str, reason: str = "") -> None:
        """Move a message body to ``queue_name``'s dead-letter queue (the caller deletes the original)."""
        attributes = {"pygigo_reason": {"DataType": "String", "StringValue": (reason or "failed")[:1000]}}
        with self.translate_errors():
            self.with_queue(
                queue_name,
                lambda _url, dlq: self.client.send_message(
                    QueueUrl=dlq, MessageBody=body, MessageAttributes=attributes
                ),
            )

    def delete_queue(self, queue_name: str) -> None:
        """Delete ``queue_name`` and its dead-letter queue (tests, tear-down)."""
        with self.translate_errors():
            url, dlq_url = self.queue_urls(queue_name)
            for target in (url, dlq_url):
                self.client.delete_queue(QueueUrl=target)
        self.forget_queue(queue_name)

    def handle_sqs_event(
        self, event: Mapping[str, Any], *, time_left_ms: Callable[[], int] | None = None
    ) -> dict[str, list[dict[str, str]]]:
        """Run an AWS Lambda SQS event batch; see :func:`.lambda_events.handle_event`."""
        from .lambda_events import handle_event

        return handle_event(self, event, time_left_ms=time_left_ms)

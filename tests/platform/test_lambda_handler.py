"""The Lambda entry point, fed SQS-shaped events built from messages really sent to and
received from moto (as Lambda's event source mapping would receive them)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import dramatiq
import pytest

from pygigo.adapters.base import ConfigurationError
from pygigo.adapters.sqs import SQSBroker
from pygigo.platform import lambda_handler, runtime
from tests.adapters import sqs_functions as fns


@pytest.fixture
def sqs_broker(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQSBroker]:
    prefix = f"l{uuid.uuid4().hex[:8]}-"
    url = f"sqs://?endpoint_url={quote(moto_endpoint, safe='')}&region=us-east-1&prefix={prefix}"
    monkeypatch.setenv("PYGIGO_BROKER_URL", url)
    monkeypatch.setenv("PYGIGO_FUNCTIONS", "tests.adapters.sqs_functions")
    runtime.reset()
    lambda_handler.reset()
    fns.record.clear()
    broker = lambda_handler.boot()
    assert isinstance(broker, SQSBroker)
    yield broker
    broker.delete_queue(fns.QUEUE)
    lambda_handler.reset()
    runtime.reset()


def sqs_event(broker: SQSBroker, count: int, wait_s: float = 10) -> dict[str, Any]:
    """Receive ``count`` messages from moto and shape them as Lambda's SQS event."""
    url, _ = broker.queue_urls(fns.QUEUE)
    arn = broker.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_s
    while len(received) < count and time.monotonic() < deadline:
        answer = broker.client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        )
        received += answer.get("Messages", [])
    assert len(received) == count
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": "us-east-1",
        }
        for m in received
    ]
    return {"Records": records}


def delete_succeeded(broker: SQSBroker, event: dict[str, Any], result: dict[str, Any]) -> None:
    """What the event source mapping does with the records not reported as failed."""
    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    url, _ = broker.queue_urls(fns.QUEUE)
    for record in event["Records"]:
        if record["messageId"] not in failed:
            broker.client.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


class Context:
    def __init__(self, left_ms: int = 60_000) -> None:
        self.left_ms = left_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.left_ms


def test_a_batch_reports_only_the_failed_records(sqs_broker: SQSBroker) -> None:
    fns.note.send("ok")
    fns.fail_once.send("retry")
    fns.fail_always.send("dead")
    sqs_broker.enqueue(
        dramatiq.Message(queue_name=fns.QUEUE, actor_name="no_such_function", args=(), kwargs={}, options={})
    )
    url, _ = sqs_broker.queue_urls(fns.QUEUE)
    garbage = sqs_broker.client.send_message(QueueUrl=url, MessageBody="not a dramatiq message")["MessageId"]

    event = sqs_event(sqs_broker, 5)
    result = lambda_handler.handler(event, Context())

    assert result == {"batchItemFailures": [{"itemIdentifier": garbage}]}
    assert len(fns.record.calls("ok")) == 1
    assert len(fns.record.calls("dead")) == 1
    delete_succeeded(sqs_broker, event, result)
    stats = sqs_broker.queue_stats(fns.QUEUE)
    assert stats.dead == 2  # fail_always (no retries) and the unknown function
    assert stats.delayed == 1  # fail_once's retry, sent by the Retries middleware

    # The retry comes back as a new message once its delay is over, and succeeds.
    retry_event = sqs_event(sqs_broker, 1, wait_s=15)
    assert lambda_handler.handler(retry_event, Context()) == {"batchItemFailures": []}
    assert len(fns.record.calls("retry")) == 2


def test_a_message_not_yet_due_is_re_delayed_not_run(sqs_broker: SQSBroker) -> None:
    sqs_broker.redelay_step_s = 1
    fns.note.send_with_options(args=("later",), delay_s=3)
    event = sqs_event(sqs_broker, 1)  # arrives after 1 s: one hop of a 3 s delay
    result = lambda_handler.handler(event, Context())
    assert result == {"batchItemFailures": []}
    assert fns.record.calls("later") == []
    delete_succeeded(sqs_broker, event, result)
    assert sqs_broker.queue_stats(fns.QUEUE).delayed == 1


def test_records_are_handed_back_when_lambda_time_runs_out(sqs_broker: SQSBroker) -> None:
    fns.note.send("late")
    event = sqs_event(sqs_broker, 1)
    result = lambda_handler.handler(event, Context(left_ms=500))
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert fns.record.calls("late") == []


def test_handler_needs_an_sqs_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "memory://")
    monkeypatch.setenv("PYGIGO_FUNCTIONS", "tests.adapters.sqs_functions")
    runtime.reset()
    lambda_handler.reset()
    try:
        with pytest.raises(ConfigurationError, match="sqs://"):
            lambda_handler.handler({"Records": []}, Context())
    finally:
        lambda_handler.reset()
        runtime.reset()

"""What is specific to the SQS adapter (the conformance suite covers the shared semantics).

Runs against a moto server on 127.0.0.1 (the session's ``moto_endpoint``); every test gets
its own queue-name prefix, so tests never share queues.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import dramatiq
import pytest
from dramatiq.errors import QueueJoinTimeout

from pygigo.adapters.base import (
    BrokerUnavailable,
    ConfigurationError,
    MessageTooLarge,
    QueueMissing,
    build_broker,
)
from pygigo.adapters.sqs import SQSBroker
from pygigo.platform import runtime
from tests.conformance.conftest import running_worker
from tests.conftest import free_port

from . import sqs_functions as fns

MakeBroker = Callable[..., SQSBroker]


def sqs_url(endpoint: str, **options: Any) -> str:
    query = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "prefix": f"t{uuid.uuid4().hex[:8]}-",
        **options,
    }
    return "sqs://?" + "&".join(f"{key}={quote(str(value), safe='')}" for key, value in query.items())


@pytest.fixture
def make_broker(moto_endpoint: str) -> Iterator[MakeBroker]:
    """Build an SQS broker on moto with URL options, make it the process's broker."""
    built: list[SQSBroker] = []

    def make(**options: Any) -> SQSBroker:
        broker = build_broker(sqs_url(moto_endpoint, **options), middleware=runtime.build_middleware())
        assert isinstance(broker, SQSBroker)
        runtime.set_broker(broker)
        built.append(broker)
        return broker

    fns.record.clear()
    yield make
    for broker in built:
        for queue in list(broker.queues):
            broker.delete_queue(queue)
    runtime.reset()


def count_calls(broker: SQSBroker) -> Counter[str]:
    """Count SQS API calls made through the broker's client, by operation name."""
    calls: Counter[str] = Counter()

    def note(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    broker.client.meta.events.register("before-call.sqs", note)
    return calls


def message(size: int = 0, actor: str = "note") -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=fns.QUEUE, actor_name=actor, args=("x" * size,), kwargs={}, options={})


# -- URL and errors (no I/O) --------------------------------------------------------------------


def test_url_options_are_parsed_and_unknown_ones_refused() -> None:
    broker = build_broker(
        "sqs://?region=eu-west-1&prefix=prod-&visibility_timeout_s=60&wait_time_s=20&max_receive_count=3"
        "&create_queues=false"
    )
    assert isinstance(broker, SQSBroker)
    assert (broker.prefix, broker.visibility_timeout_s, broker.wait_time_s) == ("prod-", 60, 20)
    assert (broker.max_receive_count, broker.create_queues) == (3, False)
    assert broker.endpoint == "sqs.eu-west-1.amazonaws.com"
    with pytest.raises(ConfigurationError, match="'visibility_timeout'"):
        build_broker("sqs://?visibility_timeout=5")
    with pytest.raises(ConfigurationError, match=r"wait_time_s.*between 0 and 20"):
        build_broker("sqs://?wait_time_s=30")
    with pytest.raises(ConfigurationError, match="no host"):
        build_broker("sqs://key:secret@sqs.eu-west-1.amazonaws.com/")


def test_oversized_message_is_refused_before_any_io(moto_endpoint: str) -> None:  # for its credentials
    port = free_port()  # nothing listens: any I/O would raise BrokerUnavailable instead
    broker = build_broker(f"sqs://?region=us-east-1&endpoint_url=http://127.0.0.1:{port}")
    assert isinstance(broker, SQSBroker)
    with pytest.raises(MessageTooLarge, match="1048576"):
        broker.enqueue(message(1024 * 1024))
    with pytest.raises(MessageTooLarge):
        broker.enqueue_many([message(10), message(1024 * 1024)])
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}"):
        broker.enqueue(message(10))


def test_missing_queue_without_create_queues_is_queue_missing(make_broker: MakeBroker) -> None:
    broker = make_broker(create_queues="false")
    with pytest.raises(QueueMissing, match="does not exist"):
        broker.enqueue(message())
    broker.queues.clear()  # nothing to delete at tear-down


# -- queues, dead letters ----------------------------------------------------------------------


def test_queue_is_created_with_a_redrive_policy(make_broker: MakeBroker) -> None:
    broker = make_broker(max_receive_count=2, visibility_timeout_s=7)
    url, dlq_url = broker.queue_urls(fns.QUEUE)
    attributes = broker.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_arn = broker.client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == dlq_arn["QueueArn"]
    assert int(policy["maxReceiveCount"]) == 2  # AWS answers a string, moto a number
    assert attributes["VisibilityTimeout"] == "7"
    assert attributes["MaximumMessageSize"] == str(1024 * 1024)  # SQS's limit since 2025
    assert dlq_url.endswith(f"{broker.prefix}{fns.QUEUE}-dlq")


def test_a_message_between_the_old_and_the_new_sqs_limit_is_delivered(make_broker: MakeBroker) -> None:
    """Over the 256 KiB SQS allowed until 2025, under today's 1 MiB: sent and run."""
    broker = make_broker()
    with running_worker(broker):
        key = "k" * (600 * 1024)
        fns.note.send(key)
        fns.record.wait_for(key, 1, timeout=15)


def test_poison_message_ends_in_the_dead_letter_queue(make_broker: MakeBroker) -> None:
    """A message whose workers die (received, never deleted) is redriven after max_receive_count."""
    broker = make_broker(max_receive_count=2)
    fns.note.send("poison")
    url, _ = broker.queue_urls(fns.QUEUE)
    for _ in range(2):  # two workers take it and "die": visibility 0 stands in for the timeout
        received = broker.client.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=1)
        assert len(received.get("Messages", [])) == 1
        time.sleep(0.01)
    assert broker.client.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []
    assert broker.queue_stats(fns.QUEUE).dead == 1


def test_failed_message_is_moved_to_the_dlq_with_its_reason(make_broker: MakeBroker) -> None:
    broker = make_broker()
    with running_worker(broker):
        fns.fail_always.send("dead")
        fns.record.wait_for("dead", 1)
        deadline = time.monotonic() + 10
        while broker.queue_stats(fns.QUEUE).dead != 1:
            assert time.monotonic() < deadline, "not dead-lettered"
            time.sleep(0.05)
    _, dlq_url = broker.queue_urls(fns.QUEUE)
    (dead,) = broker.client.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(dead["Body"])["actor_name"] == "fail_always"
    assert "this function always fails" in dead["MessageAttributes"]["pygigo_reason"]["StringValue"]
    assert broker.queue_stats(fns.QUEUE).ready == 0


# -- delays and retries beyond SQS's 15 minutes --------------------------------------------------


def test_delay_longer_than_one_step_is_re_delayed_until_due(make_broker: MakeBroker) -> None:
    broker = make_broker()
    broker.redelay_step_s = 1  # stands in for SQS's 15 minutes
    calls = count_calls(broker)
    with running_worker(broker):
        sent = time.time()
        # Several hops: even a receive that comes seconds late (moto on a loaded machine) still
        # finds the message more than a second early, so it must be re-delayed at least once.
        fns.note.send_with_options(args=("late",), delay_s=5.2)
        ((ran_at, _),) = fns.record.wait_for("late", 1, timeout=20)
    assert ran_at - sent >= 5.15
    assert calls["SendMessageBatch"] >= 1, "the message should have been re-delayed in hops"


def test_retry_with_backoff_longer_than_one_step_is_not_lost(make_broker: MakeBroker) -> None:
    broker = make_broker()
    broker.redelay_step_s = 1
    with running_worker(broker):
        fns.fail_once.send("retried")
        first, second = fns.record.wait_for("retried", 2, timeout=20)
    assert second[0] - first[0] >= 1.9  # backoff 2-4 s, delivered in 1 s hops


# -- visibility --------------------------------------------------------------------------------


def test_long_running_function_keeps_its_message_invisible(make_broker: MakeBroker) -> None:
    broker = make_broker(visibility_timeout_s=2)
    with running_worker(broker, threads=2):
        fns.sleepy.send("long", 5.0)  # 2.5 visibility timeouts
        fns.record.wait_for("long", 1, timeout=20)
        time.sleep(0.5)
    assert len(fns.record.calls("long:started")) == 1, "delivered twice: visibility was not extended"
    stats = broker.queue_stats(fns.QUEUE)
    assert (stats.ready, stats.delayed, stats.dead) == (0, 0, 0)


# -- batching ----------------------------------------------------------------------------------


def test_bulk_sends_and_acks_are_batched(make_broker: MakeBroker) -> None:
    broker = make_broker()
    broker.declare_queue(fns.QUEUE)
    calls = count_calls(broker)
    messages = [fns.note.actor.message(f"bulk-{i}") for i in range(25)]
    broker.enqueue_many(messages)
    assert calls["SendMessageBatch"] == 3 and calls["SendMessage"] == 0
    assert broker.queue_stats(fns.QUEUE).ready == 25
    with running_worker(broker, threads=8):
        for i in range(25):
            fns.record.wait_for(f"bulk-{i}", 1)
        deadline = time.monotonic() + 10
        while broker.queue_stats(fns.QUEUE).ready or calls["DeleteMessageBatch"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert calls["DeleteMessage"] == 0
    assert 1 <= calls["DeleteMessageBatch"] < 25


def test_join_waits_for_the_queue_to_drain_and_times_out_otherwise(make_broker: MakeBroker) -> None:
    broker = make_broker()
    fns.note.send("joined")
    with pytest.raises(QueueJoinTimeout):
        broker.join(fns.QUEUE, timeout=300)  # no worker yet
    with running_worker(broker):
        broker.join(fns.QUEUE, timeout=30_000)
        assert len(fns.record.calls("joined")) == 1

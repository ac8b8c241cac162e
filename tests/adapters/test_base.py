"""The adapter contract's central checks: URLs, options, registry, error translation."""

from __future__ import annotations

import sys

import dramatiq
import pytest

from pygigo.adapters import base
from pygigo.adapters.base import (
    BrokerUnavailable,
    Capabilities,
    CapabilityError,
    ConfigurationError,
    DriverMissing,
    MessageTooLarge,
    build_broker,
)
from pygigo.adapters.memory import MemoryBroker
from tests.conftest import free_port, require_service


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        build_broker("kafka://127.0.0.1:9092")
    message = str(excinfo.value)
    assert "'kafka://'" in message
    for scheme in ("memory://", "redis://", "amqp://"):
        assert scheme in message


def test_url_without_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="has no scheme"):
        build_broker("127.0.0.1:6379")


def test_unknown_option_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        build_broker("redis://127.0.0.1:6379/0?namespac=x")
    assert "'namespac'" in str(excinfo.value)
    assert "namespace" in str(excinfo.value)  # lists what is accepted


def test_bad_option_value_names_option_and_expectation() -> None:
    with pytest.raises(ConfigurationError, match=r"confirm.*expected true or false"):
        build_broker("amqp://guest:guest@127.0.0.1:5672/%2F?confirm=maybe")


def test_repeated_option_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="given twice"):
        build_broker("redis://127.0.0.1:6379/0?namespace=a&namespace=b")


def test_password_is_redacted_in_errors() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        build_broker("amqp://guest:s3cret@127.0.0.1:5672/%2F?nope=1")
    assert "s3cret" not in str(excinfo.value)
    assert "***" in str(excinfo.value)


def test_a_driver_error_quoting_the_url_is_redacted() -> None:
    """Drivers may quote the URL or the password they parsed (percent-decoded) in their errors,
    which end up in `pygigo status`, system checks and logs."""
    broker = build_broker("amqp://guest:s3cret%2Fpw@127.0.0.1:5672/%2F")
    error = broker.unavailable(OSError("login to amqp://guest:s3cret%2Fpw@127.0.0.1 as s3cret/pw failed"))
    assert "s3cret" not in str(error)
    assert "amqp://guest:***@127.0.0.1 as *** failed" in str(error)


def test_options_are_parsed_and_passed_to_the_broker() -> None:
    broker = build_broker("redis://127.0.0.1:6379/3?namespace=abc&heartbeat_timeout_ms=1234")
    assert broker.namespace == "abc"  # type: ignore[attr-defined]
    assert broker.heartbeat_timeout == 1234  # type: ignore[attr-defined]
    assert broker.endpoint == "127.0.0.1:6379/3"


def test_rabbitmq_priority_can_be_turned_off() -> None:
    on = build_broker("amqp://guest:guest@127.0.0.1:5672/%2F")
    off = build_broker("amqp://guest:guest@127.0.0.1:5672/%2F?max_priority=0")
    assert on.capabilities.supports_priority and on.max_priority == 10  # type: ignore[attr-defined]
    assert not off.capabilities.supports_priority and off.max_priority is None  # type: ignore[attr-defined]
    assert on.confirm_delivery  # type: ignore[attr-defined]


def test_memory_url_takes_no_host() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        build_broker("memory://somewhere")


def test_memory_brokers_do_not_share_state() -> None:
    first, second = build_broker("memory://"), build_broker("memory://")
    first.declare_queue("q")
    second.declare_queue("q")
    first.enqueue(dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={}))
    assert first.queue_stats("q").ready == 1
    assert second.queue_stats("q").ready == 0


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    base.register_adapter(
        "fake", base.AdapterSpec("tests.adapters.fake_adapter:Broker", "fakedriver", "fake")
    )
    monkeypatch.setitem(sys.modules, "fakedriver", None)  # import of fakedriver now fails
    try:
        with pytest.raises(DriverMissing) as excinfo:
            build_broker("fake://x")
    finally:
        base._REGISTRY.pop("fake")
    assert "pip install 'pygigo[fake]'" in str(excinfo.value)
    assert isinstance(excinfo.value, ConfigurationError)


def test_unreachable_redis_names_host_and_port() -> None:
    port = free_port()
    broker = build_broker(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}"):
        broker.ping()
    broker.declare_queue("q")
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}") as excinfo:
        broker.enqueue(dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={}))
    # A driver error never reaches the user bare; Dramatiq's worker still sees a connection error.
    assert isinstance(excinfo.value, dramatiq.errors.BrokerConnectionError)


def test_unreachable_rabbitmq_names_host_and_port() -> None:
    port = free_port()
    broker = build_broker(f"amqp://guest:guest@127.0.0.1:{port}/%2F")
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}"):
        broker.ping()


def test_reachable_brokers_ping() -> None:
    require_service("redis")
    require_service("rabbitmq")
    build_broker("redis://127.0.0.1:6379/0").ping()
    rabbit = build_broker("amqp://guest:guest@127.0.0.1:5672/%2F")
    rabbit.ping()
    rabbit.close()


class TinyBroker(MemoryBroker):
    capabilities = Capabilities(max_message_bytes=200, durable=False)


def test_message_too_large_is_refused_before_sending() -> None:
    broker = TinyBroker(fail_fast_default=False)
    broker.declare_queue("q")
    big = dramatiq.Message(queue_name="q", actor_name="a", args=("x" * 500,), kwargs={}, options={})
    with pytest.raises(MessageTooLarge, match="exceeds the memory:// broker's limit of 200 bytes"):
        broker.enqueue(big)
    assert broker.queue_stats("q").ready == 0
    small = dramatiq.Message(queue_name="q", actor_name="a", args=(), kwargs={}, options={})
    broker.enqueue(small)
    assert broker.queue_stats("q").ready == 1


def test_redis_idle_poll_is_capped_for_prompt_pickup() -> None:
    broker = build_broker("redis://127.0.0.1:6379/0?idle_poll_max_ms=7")
    consumer = broker.consume("q", prefetch=1, timeout=1000)  # Dramatiq's worker asks for 1 s
    assert consumer.timeout == 7  # type: ignore[attr-defined]


class _BinaryEncoder(dramatiq.encoder.JSONEncoder):
    """An encoder whose bytes are not UTF-8 (as a msgpack or pickle encoder's are)."""

    def encode(self, data: dramatiq.encoder.MessageData) -> bytes:
        return b"\xff" + super().encode(data)


@pytest.mark.parametrize(
    "url", ["db://", "sqs://?endpoint_url=http%3A%2F%2F127.0.0.1%3A1&region=us-east-1"], ids=["db", "sqs"]
)
def test_a_binary_encoder_is_refused_when_a_text_broker_is_configured(url: str) -> None:
    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(_BinaryEncoder())
    try:
        with pytest.raises(CapabilityError, match="_BinaryEncoder"):
            build_broker(url)
        build_broker("memory://").close()  # binary bodies are fine where nothing is text
    finally:
        dramatiq.set_encoder(previous)

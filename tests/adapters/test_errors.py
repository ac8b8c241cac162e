"""One fault, one error type, whichever operation meets it (issue 11, item 14): ``send``,
``send_many`` and ``ping`` go through each adapter's single translation hook."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import pygigo
from pygigo.adapters.base import BrokerUnavailable, ConfigurationError, PygigoError, build_broker
from pygigo.platform import runtime
from tests.conftest import free_port

NO_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}
FAKE_AWS_CREDENTIALS = {
    **NO_AWS_CREDENTIALS,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


@pygigo.function(queue="unreachable")
def unreachable(x: int) -> None: ...


def _cases() -> list[tuple[str, str, dict[str, str | None], type[PygigoError]]]:
    port = free_port()  # nothing listens there
    return [
        ("redis-down", f"redis://127.0.0.1:{port}/0", {}, BrokerUnavailable),
        (
            "rabbitmq-down",
            f"amqp://guest:guest@127.0.0.1:{port}/%2F?connection_attempts=1",
            {},
            BrokerUnavailable,
        ),
        (
            "sqs-down",
            f"sqs://?endpoint_url=http://127.0.0.1:{port}&region=us-east-1",
            FAKE_AWS_CREDENTIALS,
            BrokerUnavailable,
        ),
        ("sqs-no-credentials", "sqs://?region=us-east-1", NO_AWS_CREDENTIALS, ConfigurationError),
    ]


CASES = _cases()


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def faulty(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dict[str, Callable[[], object]], type[PygigoError]]]:
    _, url, env, expected = request.param
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    broker = build_broker(url, middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    operations = {
        "send": lambda: unreachable.send(1),
        "send_many": lambda: unreachable.send_many([(1,), (2,)]),
        "ping": broker.ping,
    }
    yield operations, expected
    runtime.reset()


def test_send_send_many_and_ping_raise_the_same_type_for_the_same_fault(
    faulty: tuple[dict[str, Callable[[], object]], type[PygigoError]],
) -> None:
    operations, expected = faulty
    raised = {}
    for name, operation in operations.items():
        with pytest.raises(PygigoError) as info:
            operation()
        raised[name] = type(info.value)
    assert raised == dict.fromkeys(operations, expected)

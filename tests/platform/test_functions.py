"""@pygigo.function: options, validation, binding to the process's broker."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

import pygigo
from pygigo.adapters.base import Capabilities, build_broker
from pygigo.adapters.memory import MemoryBroker
from pygigo.platform import runtime
from pygigo.platform.registry import registry


@pytest.fixture
def memory_broker() -> Iterator[pygigo.PygigoError | object]:
    broker = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    yield broker
    runtime.reset()


def test_options_map_to_dramatiq_units() -> None:
    options = pygigo.FunctionOptions(
        max_retries=5, min_backoff_s=0.5, max_backoff_s=2, time_limit_s=3, max_age_s=4
    )
    assert options.actor_options() == {
        "max_retries": 5,
        "min_backoff": 500,
        "max_backoff": 2000,
        "time_limit": 3000,
        "max_age": 4000,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"priority": 10}, "priority=10"),
        ({"max_retries": -1}, "max_retries"),
        ({"queue": "bad queue"}, "queue="),
        ({"queue": "x.XQ"}, "reserved"),
        ({"min_backoff_s": 5, "max_backoff_s": 1}, "min_backoff_s"),
        ({"time_limit_s": 0}, "time_limit_s"),
        ({"sensitive": "password"}, "tuple of names"),  # a bare string would mask its letters
    ],
)
def test_bad_options_fail_at_declaration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(pygigo.ConfigurationError, match=message):
        pygigo.function(**kwargs)  # type: ignore[call-overload]


def test_unknown_option_is_refused() -> None:
    with pytest.raises(pygigo.ConfigurationError, match="retries_max"):
        pygigo.function(retries_max=3)  # type: ignore[call-overload]


def test_duplicate_names_from_different_code_are_refused() -> None:
    def one() -> None: ...

    def other() -> None: ...

    pygigo.function(name="dup_name_test")(one)
    with pytest.raises(pygigo.ConfigurationError, match="dup_name_test"):
        pygigo.function(name="dup_name_test")(other)


def test_function_is_callable_locally_and_sends_to_the_broker(memory_broker: object) -> None:
    @pygigo.function(queue="unit")
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    message = double.send(4)
    assert message.actor_name == "double"
    assert message.queue_name == "unit"
    assert runtime.get_broker().queue_stats("unit").ready == 1
    assert registry.get("double") is double


def test_functions_rebind_when_the_broker_changes() -> None:
    @pygigo.function(queue="rebind")
    def noop() -> None: ...

    first = build_broker("memory://")
    runtime.set_broker(first)
    noop.send()
    second = build_broker("memory://")
    runtime.set_broker(second)
    noop.send()
    try:
        assert first.queue_stats("rebind").ready == 1
        assert second.queue_stats("rebind").ready == 1
    finally:
        runtime.reset()


class PriorityMemoryBroker(MemoryBroker):
    capabilities = Capabilities(supports_priority=True, durable=False)


def test_priority_becomes_broker_priority_only_where_supported() -> None:
    @pygigo.function(queue="prio", priority=7)
    def urgent() -> None: ...

    try:
        runtime.set_broker(build_broker("memory://"))
        assert "broker_priority" not in urgent.send().options
        assert "broker_priority" not in urgent.send_with_options(priority=7).options
        with pytest.raises(pygigo.CapabilityError, match="no per-message priority"):
            urgent.send_with_options(priority=2)  # would be silently dropped
        runtime.set_broker(PriorityMemoryBroker())
        assert urgent.send().options["broker_priority"] == 7
        assert urgent.send_with_options(priority=2).options["broker_priority"] == 2
        with pytest.raises(pygigo.ConfigurationError, match="priority=12"):
            urgent.send_with_options(priority=12)
    finally:
        runtime.reset()


def test_returned_values_do_not_warn_on_every_message(caplog: pytest.LogCaptureFixture) -> None:
    import dramatiq

    @pygigo.function(queue="ret")
    def answer() -> int:
        return 42

    broker = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        answer.send()
        broker.join("ret")
        worker.join()
    finally:
        worker.stop()
        runtime.reset()
    assert not [r for r in caplog.records if "Results middleware" in r.getMessage()]


@pygigo.function(queue="bind-test", max_retries=3, min_backoff_s=0, max_backoff_s=0)
def needs_two(x: int, y: int) -> int:
    return x + y


@pygigo.function(queue="bind-test", max_retries=1, min_backoff_s=0, max_backoff_s=0)
def buggy(x: int) -> int:
    return x + "1"  # type: ignore[operator]  # a TypeError of its own: a bug, retried like any


def test_arguments_that_do_not_bind_are_refused_when_sent_and_never_retried_on_a_worker(
    memory_broker: MemoryBroker,
) -> None:
    with pytest.raises(pygigo.BadArguments, match="missing a required argument: 'y'"):
        needs_two.send(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        needs_two.send_many([(1, 2), {"x": 1, "y": 2, "z": 3}])
    # A message that skipped the check (sent by older code, or by hand) fails once, for good,
    # while a TypeError raised by the function's own code is retried as usual.
    needs_two.actor.send(1)
    buggy.send(1)
    worker = dramatiq.Worker(memory_broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        worker.join()
    finally:
        worker.stop()
    stats = memory_broker.queue_stats("bind-test")
    assert (stats.ready, stats.delayed, stats.dead) == (0, 0, 2)
    retries = {m.actor_name: m.options.get("retries", 0) for m in memory_broker.dead_letters}
    assert retries == {"needs_two": 0, "buggy": 2}  # Dramatiq counts every failed attempt


class _Boom(Exception):
    pass


@pytest.mark.parametrize("url", ["memory://", "memory://?fail_fast=false"])
def test_memory_join_reraises_actor_failures_like_the_stub_broker(url: str) -> None:
    import dramatiq

    @pygigo.function(queue="boom", max_retries=0)
    def explode() -> None:
        raise _Boom("from the actor")

    broker = build_broker(url, middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        explode.send()
        if url == "memory://":
            with pytest.raises(_Boom, match="from the actor"):
                broker.join("boom")
        else:
            broker.join("boom")  # fail_fast=false: the failure stays in the dead letters
            assert broker.queue_stats("boom").dead == 1
    finally:
        worker.stop()
        runtime.reset()


def test_messages_for_pipelines_and_groups_carry_the_priority_like_send() -> None:
    @pygigo.function(queue="prio", priority=7)
    def urgent_step(x: int) -> None: ...

    try:
        runtime.set_broker(build_broker("memory://"))
        with pytest.raises(pygigo.CapabilityError, match="no per-message priority"):
            urgent_step.message_with_options(args=(1,), priority=2)
        runtime.set_broker(PriorityMemoryBroker())
        assert urgent_step.message(1).options["broker_priority"] == 7
        assert urgent_step.message_with_options(args=(1,), priority=2).options["broker_priority"] == 2
    finally:
        runtime.reset()


def test_a_message_whose_arguments_can_never_fit_is_refused(memory_broker: object) -> None:
    @pygigo.function(queue="fit")
    def step(x: int, y: int) -> None: ...

    assert step.message(1).args == (1,)  # a pipeline appends the previous result
    with pytest.raises(pygigo.BadArguments, match="too many"):
        step.message(1, 2, 3)
    with pytest.raises(pygigo.BadArguments, match="unexpected keyword"):
        step.message_with_options(kwargs={"z": 1})

"""Stored results and group completion callbacks, configured by URL (PYGIGO_RESULTS,
PYGIGO_GROUP_CALLBACKS), and per-function ``store_results``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import dramatiq
import pytest
from django.test import override_settings
from dramatiq.middleware import GroupCallbacks
from dramatiq.rate_limits.backends.redis import RedisBackend as RedisBarriers
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

import pygigo
from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import results, runtime, worker
from tests.conftest import require_service

REDIS = "redis://127.0.0.1:6379/15"
RUN = os.environ["PYGIGO_TEST_RUN"]


@pygigo.function(queue=f"results-{RUN}", store_results=True)
def cube(value: int) -> int:
    return value**3


finished = threading.Event()


@pygigo.function(queue=f"results-{RUN}")
def all_done() -> None:
    finished.set()


@pytest.fixture
def no_broker() -> Iterator[None]:
    yield
    runtime.reset()


def test_nothing_is_stored_unless_configured() -> None:
    assert results.middleware() == []


def test_a_redis_url_configures_results_and_group_callbacks() -> None:
    with override_settings(PYGIGO_RESULTS=f"{REDIS}?namespace=r{RUN}&ttl_s=30"):
        stored, callbacks = results.middleware()
    assert isinstance(stored, Results) and isinstance(stored.backend, RedisBackend)
    assert (stored.backend.namespace, stored.result_ttl) == (f"r{RUN}", 30_000)
    # Group barriers default to the same store, without the results' options.
    assert isinstance(callbacks, GroupCallbacks)
    assert isinstance(callbacks.rate_limiter_backend, RedisBarriers)
    assert callbacks.barrier_ttl == 86_400_000


def test_group_callbacks_alone() -> None:
    with override_settings(PYGIGO_GROUP_CALLBACKS="memory://?ttl_s=60"):
        (callbacks,) = results.middleware()
    assert isinstance(callbacks, GroupCallbacks) and callbacks.barrier_ttl == 60_000


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("amqp://guest@localhost/", "unknown scheme 'amqp://'"),
        (f"{REDIS}?colour=red", "Unknown option 'colour'"),
        (f"{REDIS}?ttl_s=0", "Bad value for option 'ttl_s'"),
        ("redis://:s3cret@127.0.0.1/0?ttl_s=x", "PYGIGO_RESULTS"),
    ],
)
def test_a_bad_results_url_is_a_configuration_error(value: str, error: str) -> None:
    with (
        override_settings(PYGIGO_RESULTS=value),
        pytest.raises(pygigo.ConfigurationError, match=error) as exc,
    ):
        results.middleware()
    assert "s3cret" not in str(exc.value)


def test_store_results_without_a_backend_says_what_to_set(no_broker: None) -> None:
    broker = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(broker)  # binds cube without the option Dramatiq would refuse
    for attempt in (lambda: cube.send(2), lambda: cube.message(2), lambda: cube.send_many([(2,)])):
        with pytest.raises(pygigo.ConfigurationError, match="PYGIGO_RESULTS"):
            attempt()
    with pytest.raises(pygigo.ConfigurationError, match=r"\bcube\b.*: store_results=True"):
        worker.check_results(broker)  # a worker refuses to start rather than store nothing


def test_store_results_with_a_backend_keeps_the_return_value(no_broker: None) -> None:
    with override_settings(PYGIGO_RESULTS="memory://"):
        broker = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    worker.check_results(broker)
    running = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    running.start()
    try:
        assert cube.send(3).get_result(block=True, timeout=10_000) == 27
    finally:
        running.stop()


def test_a_group_completes_through_redis(no_broker: None) -> None:
    """Results and barriers in a real Redis: what separate web and worker processes share."""
    require_service("redis")
    finished.clear()
    with override_settings(PYGIGO_RESULTS=f"{REDIS}?namespace=r{RUN}"):
        broker: PygigoBroker = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    running = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    running.start()
    try:
        members = dramatiq.group([cube.message(n) for n in range(4)])
        members.add_completion_callback(all_done.message())
        members.run()
        assert list(members.get_results(block=True, timeout=10_000)) == [0, 1, 8, 27]
        assert finished.wait(10)
    finally:
        running.stop()

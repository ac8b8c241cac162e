"""Observability fixtures: the site's database, a memory broker (built after a test switched
metrics on, so it carries the metrics middleware) with an in-process worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dramatiq
import pytest

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import metrics, runtime
from tests.conftest import migrate_database
from tests.django_site import functions as site_functions


@pytest.fixture(autouse=True)
def migrated_db() -> None:
    migrate_database("default")


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Metrics switched on in this process (list it before ``broker``, which then carries
    the metrics middleware), with a scrape token."""
    monkeypatch.setenv("PYGIGO_METRICS", json.dumps({"enabled": True, "token": "s3cret-token"}))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.reset()
    yield
    metrics.reset()


@pytest.fixture
def broker() -> Iterator[PygigoBroker]:
    built = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(built)
    site_functions.gate.clear()
    yield built
    site_functions.gate.set()
    runtime.reset()


@pytest.fixture
def worker(broker: PygigoBroker) -> Iterator[dramatiq.Worker]:
    running = dramatiq.Worker(broker, worker_threads=2, worker_timeout=20)
    running.start()
    yield running
    site_functions.gate.set()
    running.stop(timeout=10_000)

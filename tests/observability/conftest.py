"""Observability fixtures: the Django-site tests' database, memory broker and in-process
worker, and metrics switched on for a test."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pygigo.platform import metrics

# The site's fixtures, shared: the broker is built when a test asks for it, so a test that
# lists ``metrics_on`` first gets a broker carrying the metrics middleware.
from tests.django_site.conftest import broker, migrated_db, worker

__all__ = ["broker", "metrics_on", "migrated_db", "worker"]


@pytest.fixture
def metrics_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Metrics switched on in this process (list it before ``broker``), with a scrape token."""
    monkeypatch.setenv("PYGIGO_METRICS", json.dumps({"enabled": True, "token": "s3cret-token"}))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.reset()
    yield
    metrics.reset()

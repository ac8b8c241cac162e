"""Django-site fixtures: a migrated database (once per session), a memory broker with an
in-process Dramatiq worker, test clients."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from django.core.management import call_command

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import runtime

from . import functions


@pytest.fixture(scope="session", autouse=True)
def migrated_db() -> None:
    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def broker() -> Iterator[PygigoBroker]:
    """A fresh memory broker (with the site's middleware) as the process's broker."""
    built = build_broker("memory://", middleware=runtime.build_middleware())
    runtime.set_broker(built)
    functions.calls.clear()
    functions.gate.clear()
    yield built
    functions.gate.set()
    runtime.reset()


@pytest.fixture
def worker(broker: PygigoBroker) -> Iterator[dramatiq.Worker]:
    """An in-process worker on the memory broker."""
    running = dramatiq.Worker(broker, worker_threads=2, worker_timeout=20)
    running.start()
    yield running
    functions.gate.set()
    running.stop(timeout=10_000)

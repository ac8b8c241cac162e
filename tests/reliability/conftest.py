"""Fixtures of the reliability tests: one broker per family, tracked in this run's SQLite file
(shared with the worker subprocesses through the environment), and `pygigo worker` processes
that the tests SIGKILL."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import runtime
from tests.adapters.test_db_workers import workers
from tests.conftest import migrate_database, require_service

from .functions import QUEUE, RUN

FAMILIES = {
    # Short leases/timeouts so a dead worker's messages come back within seconds.
    "db": "db://default?lease_s=2",
    "redis": f"redis://127.0.0.1:6379/15?namespace=rel{RUN}&heartbeat_timeout_ms=2000",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
}
#: Worker heartbeat of the tests' invocations: a holder is stale after 3 s.
HEARTBEAT_S = "1"
MODULE = "tests.reliability.functions"


def _cleanup(broker: PygigoBroker) -> None:
    if broker.scheme == "db":
        broker.flush(QUEUE)
    elif broker.scheme == "redis":
        client = broker.client  # type: ignore[attr-defined]
        keys = list(client.scan_iter(f"{broker.namespace}:*"))  # type: ignore[attr-defined]
        if keys:
            client.delete(*keys)
    else:
        broker.delete_queue(QUEUE)  # type: ignore[attr-defined]


@pytest.fixture(params=list(FAMILIES))
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker(family: str) -> Iterator[PygigoBroker]:
    if family != "db":
        require_service(family)
    migrate_database("default")
    built = build_broker(FAMILIES[family], middleware=runtime.build_middleware())
    runtime.set_broker(built)
    try:
        yield built
    finally:
        try:
            _cleanup(built)
        finally:
            runtime.reset()


def worker(url: str, log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """`pygigo worker` (one process, four threads) serving tests.reliability.functions."""
    return workers(url, log, threads=4, module=MODULE, PYGIGO_HEARTBEAT_S=HEARTBEAT_S)

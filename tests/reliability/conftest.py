"""Fixtures of the reliability tests: one broker per family, tracked in this run's SQLite file
(shared with the worker subprocesses through the environment), and `pygigo worker` processes
that the tests SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import runtime
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


@contextlib.contextmanager
def worker(url: str, log: Path, *, threads: int = 4) -> Iterator[subprocess.Popen[bytes]]:
    """`pygigo worker` (one process) serving tests.reliability.functions; stopped at the end."""
    env = dict(os.environ, PYGIGO_BROKER_URL=url, PYGIGO_HEARTBEAT_S=HEARTBEAT_S)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pygigo", "worker", "tests.reliability.functions", "-p", "1"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "-t", str(threads)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

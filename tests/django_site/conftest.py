"""Django-site fixtures: a migrated database (once per session), a memory broker with an
in-process Dramatiq worker, test clients, a private redis-server that tests may stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from pygigo.adapters.base import PygigoBroker, build_broker
from pygigo.platform import runtime
from tests.conftest import free_port

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
def admin_client() -> Client:
    """A test client signed in as a new superuser."""
    user = get_user_model().objects.create_superuser(f"admin-{uuid.uuid4().hex[:8]}", password="pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def worker(broker: PygigoBroker) -> Iterator[dramatiq.Worker]:
    """An in-process worker on the memory broker."""
    running = dramatiq.Worker(broker, worker_threads=2, worker_timeout=20)
    running.start()
    yield running
    functions.gate.set()
    running.stop(timeout=10_000)


class PrivateRedis:
    """A redis-server of our own on a free port, so stopping it disturbs nobody else's tests
    (other runs share the machine's Redis on 6379)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pygigo-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("PYGIGO_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:  # whatever happened: no server left behind, nor a stopped one in use
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)

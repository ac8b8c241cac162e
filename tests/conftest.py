"""Test-wide set-up: Django on Pygigo's default site with a throw-away SQLite file, a run id
that makes queue names unique (several runs may share one Redis or RabbitMQ), and service
checks that skip locally but fail in CI (PYGIGO_REQUIRE_SERVICES=1).

Databases are migrated on first use by the tests that need them (``migrate_database``); the
PostgreSQL alias lives in a schema of this run, dropped at the end of the session."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest

_TMP = tempfile.mkdtemp(prefix="pygigo-tests-")
os.environ.setdefault("PYGIGO_TEST_RUN", uuid.uuid4().hex[:8])
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ.setdefault("PYGIGO_SQLITE_PATH", os.path.join(_TMP, "db.sqlite3"))
# Worker heartbeat files of this run only (the default directory is shared by the machine).
os.environ.setdefault("PYGIGO_HEARTBEAT_DIR", os.path.join(_TMP, "heartbeats"))
os.environ.pop("PYGIGO_BROKER_URL", None)
os.environ["DJANGO_ALLOWED_HOSTS"] = "*"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

_MIGRATED: set[str] = set()

SERVICES = {"redis": 6379, "rabbitmq": 5672, "postgres": 5432}


def service_up(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition another process or thread will make true (no event to join on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def require_service(name: str) -> None:
    """Skip (locally) or fail (CI) when ``name`` is not listening on its port."""
    port = SERVICES[name]
    if service_up(port):
        return
    missing(
        f"{name} is not listening on 127.0.0.1:{port}; start it with `bash infra/services.sh start {name}`"
    )


def missing(reason: str) -> NoReturn:
    """Skip for ``reason`` (locally), or fail (CI: PYGIGO_REQUIRE_SERVICES=1)."""
    if os.environ.get("PYGIGO_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def migrate_database(alias: str) -> None:
    """Migrate ``alias`` once per session (for the postgres alias: into this run's schema)."""
    if alias in _MIGRATED:
        return
    if alias == "postgres":
        require_service("postgres")
        with connections[alias].cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {settings.POSTGRES_SCHEMA}")
    call_command("migrate", database=alias, verbosity=0)
    _MIGRATED.add(alias)


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schema() -> Iterator[None]:
    yield
    if "postgres" in _MIGRATED:
        connections.close_all()
        with connections["postgres"].cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {settings.POSTGRES_SCHEMA} CASCADE")
        connections["postgres"].close()


# SQS: a moto server on loopback, shared by the session. Worker subprocesses reach it through
# the broker URL (endpoint_url) and inherit the dummy credentials from the environment.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never read the developer's real profile or credentials files.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # AWS allows one PurgeQueue a minute per queue (moto enforces it too); the conformance
    # suite flushes before and after every test.
    "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<free port>`` of a moto server started for this test session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing("moto[server] is not installed; pip install -e '.[dev]'")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    saved = {name: os.environ.get(name) for name in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

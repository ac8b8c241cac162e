"""Test-wide set-up: Django on Pygigo's default site with a throw-away SQLite file, a run id
that makes queue names unique (several runs may share one Redis or RabbitMQ), and service
checks that skip locally but fail in CI (PYGIGO_REQUIRE_SERVICES=1).

Databases are migrated on first use by the tests that need them (``migrate_database``); the
PostgreSQL alias lives in a schema of this run, dropped at the end of the session."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator

import pytest

_TMP = tempfile.mkdtemp(prefix="pygigo-tests-")
os.environ.setdefault("PYGIGO_TEST_RUN", uuid.uuid4().hex[:8])
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ.setdefault("PYGIGO_SQLITE_PATH", os.path.join(_TMP, "db.sqlite3"))
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


def require_service(name: str) -> None:
    """Skip (locally) or fail (CI) when ``name`` is not listening on its port."""
    port = SERVICES[name]
    if service_up(port):
        return
    reason = (
        f"{name} is not listening on 127.0.0.1:{port}; start it with `bash infra/services.sh start {name}`"
    )
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

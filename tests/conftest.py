"""Test-wide set-up: Django on Pygigo's default site with a throw-away SQLite file, a run id
that makes queue names unique (several runs may share one Redis or RabbitMQ), and service
checks that skip locally but fail in CI (PYGIGO_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid

import pytest

_TMP = tempfile.mkdtemp(prefix="pygigo-tests-")
os.environ.setdefault("PYGIGO_TEST_RUN", uuid.uuid4().hex[:8])
os.environ["DJANGO_SETTINGS_MODULE"] = "pygigo.django_site.settings"
os.environ.setdefault("PYGIGO_SQLITE_PATH", os.path.join(_TMP, "db.sqlite3"))
os.environ.pop("PYGIGO_BROKER_URL", None)
os.environ["DJANGO_ALLOWED_HOSTS"] = "*"
# A "postgres" database alias for multi-process tests (created and dropped by the tests that
# use it; nothing connects to it otherwise). SQLite stays the default.
os.environ.setdefault("PYGIGO_POSTGRES_NAME", f"pygigo_test_{os.environ['PYGIGO_TEST_RUN']}")

import django  # noqa: E402

django.setup()

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

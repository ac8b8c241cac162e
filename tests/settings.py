"""Settings of the test run: Pygigo's default site plus a ``postgres`` alias.

The alias points at the shared ``test`` database on 127.0.0.1:5432 but works in a schema of
its own per test run (``pygigo_t<run id>``, created and dropped by tests/conftest.py), so
concurrent runs never see each other's tables. Worker subprocesses inherit the run id and the
SQLite path through the environment, so they open the same databases as the test process.
"""

from __future__ import annotations

import os

from pygigo.default_site.settings import *  # noqa: F403
from pygigo.default_site.settings import DATABASES

# Not the default site's public development key: tests run with DEBUG off, which refuses it.
SECRET_KEY = "pygigo-test-suite-secret-key-never-used-in-production"
TEST_RUN = os.environ.get("PYGIGO_TEST_RUN", "local")
POSTGRES_SCHEMA = f"pygigo_t{TEST_RUN}"

DATABASES = {
    **DATABASES,
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PYGIGO_TEST_PG_NAME", "test"),
        "USER": os.environ.get("PYGIGO_TEST_PG_USER", "postgres"),
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "OPTIONS": {
            "options": f"-c search_path={POSTGRES_SCHEMA}",
            # Lets a test terminate its own subprocesses' backends, and no one else's.
            "application_name": os.environ.get("PYGIGO_TEST_PG_APP", f"pygigo_t{TEST_RUN}"),
        },
    },
}

# Django tasks on Pygigo (tests/tasks): queues named after the run, like the conformance suite's.
TASKS = {
    "default": {
        "BACKEND": "pygigo.django_site.tasks.PygigoBackend",
        "QUEUES": [f"tasks-{TEST_RUN}", f"tasks-other-{TEST_RUN}"],
    }
}

# Worker and scheduler subprocesses that must share one database across processes run with
# PYGIGO_DEFAULT_DATABASE=postgres: this run's schema becomes their default database too.
if os.environ.get("PYGIGO_DEFAULT_DATABASE") == "postgres":
    DATABASES["default"] = DATABASES["postgres"]

# A web process whose send finds the broker down relays its outbox from a thread; tests that
# stop a broker check the outbox by hand, so only the test of that thread turns it on.
PYGIGO_OUTBOX_AUTO_RELAY = False

"""The database broker as a tiny Django app: its table, migration and admin."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

#: SQLite waits this long for a lock before raising "database is locked". Python's default
#: (5 s) is short for several worker processes writing at once.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_busy_timeout(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """Raise (never lower) the busy timeout of every new SQLite connection of the project.

    Workers, their heartbeat threads and web processes all write the broker's table; with a
    busy timeout a writer waits for the lock instead of failing. Harmless for other apps.
    """
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        (current,) = cursor.fetchone()
        if current < SQLITE_BUSY_TIMEOUT_MS:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


class DatabaseBrokerConfig(AppConfig):
    name = "pygigo.adapters.db"
    label = "pygigo_db"
    verbose_name = "Pygigo database broker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(_sqlite_busy_timeout, dispatch_uid="pygigo_db_sqlite_busy_timeout")

"""The project's Pygigo functions (PYGIGO_FUNCTIONS = ["mysite.functions"])."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

import pygigo


@pygigo.function(queue="mysite")
def add(x: int, y: int) -> int:
    """Private (the default): call it with an API key, ``manage.py pygigo_apikey create NAME``."""
    return x + y


@pygigo.cron("* * * * *")
@pygigo.function(queue="mysite")
def heartbeat() -> None:
    """Every minute, fired by ``manage.py pygigo_scheduler``: the time of the last run, for a
    liveness probe."""
    Path(settings.BASE_DIR, "heartbeat.txt").write_text(datetime.now(UTC).isoformat())

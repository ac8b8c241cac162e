"""Code schedules for the `pygigo schedules` tests."""

from __future__ import annotations

import os

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]


@pygigo.cron("*/15 * * * *", timezone="Europe/Paris", name=f"paris-quarter-{RUN}")
@pygigo.function(name=f"table_quarter_{RUN}")
def quarter() -> None:
    return None


@pygigo.every(seconds=30, misfire="catch_up", name=f"half-minute-{RUN}")
def half_minute() -> None:
    return None

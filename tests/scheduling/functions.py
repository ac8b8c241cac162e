"""Functions (no schedules) for the scheduling tests; the tests build their own registries."""

from __future__ import annotations

import os

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"sched-{RUN}"


@pygigo.function(queue=QUEUE, name=f"sched_report_{RUN}")
def report(day: str = "today") -> str:
    return day


@pygigo.function(queue=QUEUE, name=f"sched_cleanup_{RUN}")
def cleanup() -> None:
    return None

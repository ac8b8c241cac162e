"""Loaded by the scheduler subprocesses of test_replicas: a one-second schedule that catches
up after a leader change, so "every slot exactly once" is checkable."""

from __future__ import annotations

import os

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"replicas-{RUN}"
SCHEDULE = f"tick-{RUN}"


@pygigo.every(seconds=1, misfire="catch_up", name=SCHEDULE)
@pygigo.function(queue=QUEUE, name=f"replica_tick_{RUN}")
def tick() -> None:
    return None

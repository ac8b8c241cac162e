"""Loaded by the scheduler subprocesses of test_replicas: a one-second schedule that catches
up after a leader change, so "every slot exactly once" is checkable, and one with the default
misfire policy (skip), on a queue of its own."""

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


SKIP_QUEUE = f"replicas-skip-{RUN}"
SKIP_SCHEDULE = f"tick-skip-{RUN}"


@pygigo.every(seconds=1, name=SKIP_SCHEDULE)
@pygigo.function(queue=SKIP_QUEUE, name=f"replica_tick_skip_{RUN}")
def tick_skip() -> None:
    return None

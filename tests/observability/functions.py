"""Functions the observability tests run: one that succeeds, one that fails for good, and
one on a queue no test worker serves (so its messages wait and age)."""

from __future__ import annotations

import os

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"obs-{RUN}"
IDLE_QUEUE = f"obs-idle-{RUN}"


@pygigo.function(queue=QUEUE)
def obs_ok(x: int) -> int:
    return x * 2


@pygigo.function(queue=QUEUE, max_retries=0)
def obs_boom() -> None:
    raise RuntimeError("boom (on purpose)")


@pygigo.function(queue=IDLE_QUEUE)
def obs_waits() -> None:
    return None

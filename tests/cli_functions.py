"""Functions for the CLI tests: one per queue; each run leaves a file behind."""

from __future__ import annotations

import os
from pathlib import Path

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]


@pygigo.function(queue=f"math-{RUN}", max_retries=3)
def add(x: int, y: int, out: str) -> int:
    Path(out, f"add-{x + y}").touch()
    return x + y


@pygigo.function(queue=f"reports-{RUN}")
def report(out: str) -> None:
    Path(out, "report").touch()

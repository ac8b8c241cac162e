"""Functions the SQS adapter and Lambda tests run (their own queue, named for the test run)."""

from __future__ import annotations

import os
import time

import pygigo
from tests.conformance.functions import Recorder

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"sqs-{RUN}"

record = Recorder()
_attempted: set[str] = set()


@pygigo.function(queue=QUEUE)
def note(key: str) -> None:
    record.add(key, None)


@pygigo.function(queue=QUEUE, max_retries=1, min_backoff_s=4, max_backoff_s=4)
def fail_once(key: str) -> None:
    """Fails its first attempt; the retry's backoff (2-4 s with jitter) is longer than the
    tests' shortened re-delay step, as a 40-minute backoff is longer than SQS's 15 minutes."""
    first = key not in _attempted
    _attempted.add(key)
    record.add(key, None)
    if first:
        raise RuntimeError("the first attempt fails")


@pygigo.function(queue=QUEUE, max_retries=0)
def fail_always(key: str) -> None:
    record.add(key, None)
    raise RuntimeError("this function always fails")


@pygigo.function(queue=QUEUE, max_retries=0)
def sleepy(key: str, seconds: float) -> None:
    record.add(key + ":started", None)
    time.sleep(seconds)
    record.add(key, None)

"""Loaded by the reliability tests and their `pygigo worker` subprocesses. Each function
appends ``<event> <key>`` to a file per process under the directory named in the request
(O_APPEND lines are atomic), so a test counts starts and completions across processes."""

from __future__ import annotations

import json
import os
import signal
import time

from django.http import HttpRequest, JsonResponse

import pygigo

RUN = os.environ["PYGIGO_TEST_RUN"]
QUEUE = f"rel-{RUN}"


def record(directory: str, event: str, key: str) -> None:
    path = os.path.join(directory, f"events-{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{event} {key}\n".encode())
    finally:
        os.close(fd)


def read_events(directory: str, event: str) -> list[str]:
    """The keys of every ``event`` recorded, from every process."""
    keys = []
    for name in os.listdir(directory):
        if name.startswith("events-"):
            with open(os.path.join(directory, name)) as handle:
                keys += [line.split()[1] for line in handle if line.split()[0] == event]
    return keys


@pygigo.function(queue=QUEUE, public=True, name=f"rel_work_{RUN}")
def work(request: HttpRequest) -> JsonResponse:
    """Half a second of work between a start and a completion record."""
    job = json.loads(request.body)
    record(job["dir"], "start", job["key"])
    time.sleep(0.5)
    record(job["dir"], "done", job["key"])
    return JsonResponse({"key": job["key"]})


@pygigo.function(queue=QUEUE, public=True, max_retries=1, name=f"rel_suicide_{RUN}")
def suicide(request: HttpRequest) -> None:
    """Kills its own worker process, every time (a poison message)."""
    record(json.loads(request.body)["dir"], "start", "suicide")
    os.kill(os.getpid(), signal.SIGKILL)


@pygigo.function(queue=QUEUE, max_retries=1, name=f"rel_suicide_plain_{RUN}")
def suicide_plain(directory: str) -> None:
    """The same, sent with plain ``fn.send``."""
    record(directory, "start", "plain")
    os.kill(os.getpid(), signal.SIGKILL)

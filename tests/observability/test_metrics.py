"""Prometheus metrics after real work: `pygigo worker` processes on a real Redis (scraped on
their port), and the web process's /metrics (scraped through Django). Parsed with
prometheus_client's own parser."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from pygigo.adapters.base import build_broker
from pygigo.django_site import outbox
from pygigo.django_site.checks import check_metrics
from pygigo.platform import metrics, runtime
from tests.conftest import free_port, require_service, wait_until
from tests.django_site import functions as site_functions

from . import functions

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


@contextlib.contextmanager
def worker_group(env: dict[str, str], *queues: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-m",
        "pygigo",
        "worker",
        "tests.observability.functions",
        "-p",
        "2",
        "-t",
        "2",
    ]
    process = subprocess.Popen([*command, "--queues", *queues], env=env, start_new_session=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)  # the main process stops its workers and forks
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_worker_processes_expose_summed_metrics_and_queue_gauges_on_their_port() -> None:
    require_service("redis")
    url = f"redis://127.0.0.1:6379/15?namespace=obs{functions.RUN}"
    port = free_port()
    env = {
        **os.environ,
        "PYGIGO_BROKER_URL": url,
        "PYGIGO_METRICS": json.dumps({"enabled": True, "port": port}),
        "PYTHONPATH": os.getcwd(),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    broker = build_broker(url, middleware=runtime.build_middleware())
    runtime.set_broker(broker)
    try:
        for x in range(6):
            functions.obs_ok.send(x)
        functions.obs_boom.send()
        functions.obs_waits.send()
        functions.obs_waits.send()
        with worker_group(env, functions.QUEUE):

            def done() -> bool:
                try:
                    samples = scrape(port)
                except OSError:  # the port is not up yet
                    return False
                succeeded = value(
                    samples, "pygigo_messages_succeeded_total", function="obs_ok", queue=functions.QUEUE
                )
                dead = value(
                    samples, "pygigo_messages_dead_lettered_total", function="obs_boom", queue=functions.QUEUE
                )
                return succeeded == 6 and dead == 1

            wait_until(done, timeout=60, what="the worker port to report 6 successes and 1 dead letter")
            samples = scrape(port)
    finally:
        with contextlib.suppress(Exception):
            client = broker.client  # type: ignore[attr-defined]
            keys = list(client.scan_iter(f"{broker.namespace}:*"))  # type: ignore[attr-defined]
            if keys:
                client.delete(*keys)
        runtime.reset()
    ok = {"function": "obs_ok", "queue": functions.QUEUE}
    boom = {"function": "obs_boom", "queue": functions.QUEUE}
    assert value(samples, "pygigo_messages_started_total", **ok) == 6
    assert value(samples, "pygigo_run_seconds_count", **ok) == 6
    assert value(samples, "pygigo_latency_seconds_count", **ok) == 6
    assert value(samples, "pygigo_messages_in_flight", **ok) == 0
    assert value(samples, "pygigo_messages_failed_total", **boom) == 1
    assert value(samples, "pygigo_messages_retried_total", **boom) == 0  # max_retries=0
    # Queue gauges come from the broker at scrape time, through the adapter contract.
    assert value(samples, "pygigo_queue_ready", queue=functions.IDLE_QUEUE) == 2
    assert value(samples, "pygigo_queue_ready", queue=functions.QUEUE) == 0
    assert value(samples, "pygigo_queue_dead", queue=functions.QUEUE) == 1
    assert (value(samples, "pygigo_queue_oldest_ready_age_seconds", queue=functions.IDLE_QUEUE) or 0) > 0


def test_web_metrics_need_staff_or_the_token_and_count_http_and_waits(
    metrics_on: None, worker: object
) -> None:
    denied = Client().get("/metrics")
    assert denied.status_code == 401 and denied.json()["code"] == "not_authenticated"
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401

    answered = Client().post(
        "/fn/fe_echo", data=b"hi", content_type="text/plain", headers={"Prefer": "wait=10"}
    )
    assert answered.status_code == 201
    # fe_block waits for the gate (closed): the short wait falls back to 202.
    assert Client().post("/fn/fe_block", headers={"Prefer": "wait=0.2"}).status_code == 202
    site_functions.gate.set()

    scraped = Client().get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert scraped.status_code == 200
    samples = parse(scraped.content.decode())
    echo = {"function": "fe_echo", "queue": site_functions.QUEUE}
    assert value(samples, "pygigo_messages_enqueued_total", **echo) == 1
    assert value(samples, "pygigo_messages_succeeded_total", **echo) == 1
    assert (
        value(samples, "pygigo_http_requests_total", route="fn/<str:name>", method="POST", status="201") == 1
    )
    assert value(samples, "pygigo_http_prefer_wait_total", outcome="answered") == 1
    assert value(samples, "pygigo_http_prefer_wait_total", outcome="fell_back") == 1
    assert value(samples, "pygigo_outbox_backlog") == outbox.pending()  # the table's count
    assert value(samples, "pygigo_queue_ready", queue=site_functions.QUEUE) == 0

    staff = get_user_model().objects.create_user("metrics-staff", password="x", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200
    staff.delete()


def test_web_metrics_answer_404_while_switched_off() -> None:
    metrics.reset()
    response = Client().get("/metrics")
    assert response.status_code == 404
    assert response.json()["code"] == "metrics_disabled"


def test_unknown_metrics_setting_is_a_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_METRICS", json.dumps({"enabled": True, "prot": 9191}))
    (error,) = check_metrics()
    assert error.id == "pygigo.E005" and "prot" in error.msg and "port" in error.msg

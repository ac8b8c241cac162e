"""Secrets kept out of what is printed (issue 11, item 12)."""

from __future__ import annotations

import dramatiq
import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import get_default_exception_reporter_filter

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site import store
from pygigo.platform.envelope import Envelope

from . import functions

URL = "amqp://pygigo:s3cret-pw@127.0.0.1:5672/%2F"


@override_settings(PYGIGO_BROKER_URL=URL)
def test_debug_page_shows_broker_urls_without_their_password() -> None:
    reporter_filter = get_default_exception_reporter_filter()
    shown = reporter_filter.get_safe_settings()["PYGIGO_BROKER_URL"]
    assert "s3cret-pw" not in shown and "127.0.0.1:5672" in shown
    request = RequestFactory().get("/", PYGIGO_BROKER_URL=URL)  # runserver copies os.environ
    meta = reporter_filter.get_safe_request_meta(request)
    assert "s3cret-pw" not in meta["PYGIGO_BROKER_URL"]


def test_failure_log_lines_name_an_envelope_by_id_not_by_content(
    broker: PygigoBroker, worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture
) -> None:
    envelope = Envelope(function="fe_fails_once", kind="call", args=("secret-argument",))
    invocation, _ = store.submit(envelope, functions.fe_fails_once)
    done = store.wait_for(invocation.id, 10)
    assert done is not None and done.finished
    worker.join()
    failures = [r.getMessage() for r in caplog.records if r.name == "dramatiq.worker.WorkerThread"]
    assert any(envelope.id in line or str(invocation.id) in line for line in failures), failures
    assert not any("secret-argument" in line for line in failures)

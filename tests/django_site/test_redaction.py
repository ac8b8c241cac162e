"""Secrets kept out of what is kept and printed (issue 11, items 10-12)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any
from urllib.parse import urlencode

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory, override_settings
from django.test.client import MULTIPART_CONTENT
from django.views.debug import get_default_exception_reporter_filter

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site import store
from pygigo.django_site.models import ApiKey, Status
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


# -- Secrets at rest (issue 11, items 10 and 11) -------------------------------------------------

PASSWORD = "hunter2-password"
TOKEN = "query-token-1234"


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser(f"admin-{uuid.uuid4().hex[:8]}", password="pw")
    client = Client()
    client.force_login(user)
    return client


def _formatted(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a handler would print it, traceback included."""
    return "\n".join(logging.Formatter().format(record) for record in caplog.records)


@pytest.mark.parametrize(
    ("content_type", "body", "kept"),
    [
        (
            "application/json",
            json.dumps({"user": "ann", "password": PASSWORD}),
            {"user": "ann", "password": "***"},
        ),
        ("application/x-www-form-urlencoded", urlencode({"user": "ann", "password": PASSWORD}), None),
        (MULTIPART_CONTENT, {"user": "ann", "password": PASSWORD}, None),
    ],
)
def test_sensitive_fields_reach_the_function_but_are_masked_in_what_is_kept(
    broker: PygigoBroker,
    worker: dramatiq.Worker,
    admin_client: Client,
    content_type: str,
    body: Any,
    kept: dict[str, str] | None,
) -> None:
    functions.logins.clear()
    accepted = Client().post(f"/fn/fe_login?token={TOKEN}&page=2", data=body, content_type=content_type)
    assert accepted.status_code == 202
    done = store.wait_for(accepted.json()["id"], 10)
    assert done is not None and done.status == Status.SUCCEEDED, done and done.error
    assert functions.logins == [(PASSWORD, TOKEN)]  # the worker got them in clear

    stored = done.envelope
    assert stored["query"] == [["token", "***"], ["page", "2"]]
    if content_type == "application/json":
        assert json.loads(stored["body"]) == kept
    elif content_type == "application/x-www-form-urlencoded":
        assert stored["body"] == "user=ann&password=%2A%2A%2A"
    else:  # multipart: its fields cannot be told apart reliably, so the body is masked whole
        assert stored["body"] == "***"
    page = admin_client.get(f"/admin/pygigo/invocation/{done.id}/change/").content.decode()
    for secret in (PASSWORD, TOKEN, "cookie-value-of-the-response"):  # the last: the result's Set-Cookie
        assert secret not in page and secret not in json.dumps(stored)
    assert "***" in page
    with pytest.raises(ValueError, match="sensitive"):
        store.rerun(done)  # it would run with *** in place of the password


def test_sensitive_arguments_are_masked_in_the_record_error_and_failure_log(
    broker: PygigoBroker, worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture
) -> None:
    card = "4111-1111-1111-1111"
    envelope = Envelope(function="fe_charge", kind="call", args=(5,), kwargs={"card": card})
    invocation, _ = store.submit(envelope, functions.fe_charge)
    tracked = store.wait_for(invocation.id, 10)
    assert tracked is not None and tracked.status == Status.FAILED
    functions.fe_charge.send(7, card)  # by position, untracked
    broker.join(functions.QUEUE, fail_fast=False)
    worker.join()

    assert tracked.envelope["kwargs"] == {"card": "***"}
    assert tracked.error.startswith("ValueError: card *** declined for 5")
    assert card not in tracked.error
    logged = _formatted(caplog)
    assert "fe_charge(7, '***')" in logged  # the plain message's failure line, masked
    assert "card *** declined for 7" in logged  # its traceback, scrubbed
    assert card not in logged


def test_forwarded_credentials_are_scrubbed_from_the_error_and_every_log_line(
    broker: PygigoBroker, worker: dramatiq.Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # Dramatiq's actors log their arguments at DEBUG
    user = get_user_model().objects.create_user(f"u-{uuid.uuid4().hex[:8]}", password="pw")
    _, raw = ApiKey.generate("forwarded", user)
    accepted = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").post(
        "/fn/fe_use_token",
        data=b"",
        content_type="text/plain",
        headers={"Cookie": "sessionid=cookie-secret-99"},
    )
    assert accepted.status_code == 202
    done = store.wait_for(accepted.json()["id"], 10)
    assert done is not None and done.status == Status.FAILED
    worker.join()

    assert done.error.startswith("PermissionError: upstream refused ***")
    assert ["Authorization", "***"] in done.envelope["headers"]
    logged = _formatted(caplog)
    assert "upstream refused ***" in logged  # the failure's traceback was logged, scrubbed
    assert raw not in logged and raw not in done.error
    assert "cookie-secret-99" not in logged


@override_settings(ROOT_URLCONF="tests.django_site.views")
def test_a_sensitive_url_parameter_is_masked_in_the_record_and_its_path(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    accepted = Client().post("/reset/route-secret-123")
    assert accepted.status_code == 202
    done = store.wait_for(accepted.json()["id"], 10)
    assert done is not None and done.status == Status.SUCCEEDED
    assert "token of 16 characters" in done.result["body"]  # the view got it
    assert done.envelope["route_kwargs"] == {"token": "***"}
    assert done.envelope["path"] == "/reset/***"

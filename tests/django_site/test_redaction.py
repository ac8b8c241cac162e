"""Secrets kept out of what is printed (issue 11, item 12)."""

from __future__ import annotations

from django.test import RequestFactory, override_settings
from django.views.debug import get_default_exception_reporter_filter

URL = "amqp://pygigo:s3cret-pw@127.0.0.1:5672/%2F"


@override_settings(PYGIGO_BROKER_URL=URL)
def test_debug_page_shows_broker_urls_without_their_password() -> None:
    reporter_filter = get_default_exception_reporter_filter()
    shown = reporter_filter.get_safe_settings()["PYGIGO_BROKER_URL"]
    assert "s3cret-pw" not in shown and "127.0.0.1:5672" in shown
    request = RequestFactory().get("/", PYGIGO_BROKER_URL=URL)  # runserver copies os.environ
    meta = reporter_filter.get_safe_request_meta(request)
    assert "s3cret-pw" not in meta["PYGIGO_BROKER_URL"]

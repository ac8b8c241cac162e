"""Property-based run of the OpenAPI document against the WSGI app, in process: whatever
schemathesis sends (bounded examples), the API never answers with a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.test import override_settings
from hypothesis import HealthCheck, settings

from pygigo.adapters.base import PygigoBroker
from pygigo.default_site.wsgi import application

schema = schemathesis.openapi.from_wsgi("/openapi.json", application)


@pytest.fixture
def api_settings(broker: PygigoBroker) -> Iterator[None]:
    # No rate limit (one client address sends everything) and no long Prefer waits
    # (nothing consumes the memory broker here).
    with override_settings(PYGIGO_RATE_LIMIT=None, PYGIGO_MAX_WAIT_S=0.01):
        yield


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case: schemathesis.Case, api_settings: None) -> None:
    response = case.call()
    assert response.status_code < 500, response.text

from __future__ import annotations

from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings
from dramatiq.middleware import Middleware

from pygigo.adapters.base import build_broker
from pygigo.django_site.apps import TRACKER
from pygigo.django_site.checks import (
    check_broker_url,
    check_functions_modules,
    check_schedules,
    check_tracking,
)
from pygigo.django_site.scheduling.models import Schedule
from pygigo.django_site.tracking import InvocationTracker
from pygigo.platform import runtime
from pygigo.platform import settings as pygigo_settings


def test_bad_broker_url_is_a_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "redis://127.0.0.1:6379/0?bogus=1")
    (error,) = check_broker_url()
    assert error.id == "pygigo.E001"
    assert "bogus" in error.msg


@pytest.mark.parametrize(
    "url", ["memory://user:s3cret-pw@host", "sqs://key:s3cret-pw@host/?region=eu-west-1"]
)
def test_a_broker_url_check_error_never_shows_its_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", url)
    (error,) = check_broker_url()
    assert error.id == "pygigo.E001"
    assert "s3cret-pw" not in error.msg and ":***@" in error.msg


def test_good_broker_url_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "redis://127.0.0.1:6379/0")
    assert check_broker_url() == []


def test_a_broker_that_is_not_durable_is_a_warning_outside_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "memory://")
    (warning,) = check_broker_url()
    assert warning.id == "pygigo.W005" and "memory://" in warning.msg
    with override_settings(DEBUG=True):
        assert check_broker_url() == []


class Marker(Middleware):
    """A user's own worker middleware."""


def test_the_app_installs_tracking_and_a_users_middleware_adds_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installing the app is enough for tracking (a user's project used to leave every HTTP
    invocation 'queued' forever); PYGIGO_MIDDLEWARE adds to it, never replaces it."""
    monkeypatch.setenv("PYGIGO_MIDDLEWARE", f"{__name__}.Marker")
    assert pygigo_settings.middleware_paths() == [TRACKER, f"{__name__}.Marker"]
    built = [type(m) for m in runtime.build_middleware()]
    assert built.index(Marker) == built.index(InvocationTracker) + 1  # the user's after the app's


def test_tracking_missing_from_the_broker_is_a_warning() -> None:
    runtime.set_broker(build_broker("memory://"))  # by hand: no tracker
    try:
        (warning,) = check_tracking()
        assert warning.id == "pygigo.W001" and warning.level == checks.WARNING
        runtime.set_broker(build_broker("memory://", middleware=runtime.build_middleware()))
        assert check_tracking() == []
    finally:
        runtime.reset()


def test_a_functions_module_that_does_not_import_is_a_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_FUNCTIONS", "tests.django_site.functions,no_such_functions_module")
    (error,) = check_functions_modules()
    assert error.id == "pygigo.E002" and "no_such_functions_module" in error.msg
    assert "PYGIGO_FUNCTIONS" in (error.hint or "")


def test_a_body_limit_above_the_brokers_message_size_needs_claim_checks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "db://")  # carries 1 MiB
    monkeypatch.setenv("PYGIGO_MAX_BODY_BYTES", str(4 * 1024 * 1024))
    (warning,) = check_broker_url()
    assert warning.id == "pygigo.W002" and "PYGIGO_CLAIM_CHECK_DIR" in (warning.hint or "")
    monkeypatch.setenv("PYGIGO_CLAIM_CHECK_DIR", str(tmp_path))
    assert check_broker_url() == []


def test_a_schedule_naming_an_unknown_function_is_reported() -> None:
    row = Schedule.objects.create(name="check-ghost", function="no_such_function", expression="@daily")
    try:
        assert check_schedules() == []  # database rows only when checking a database
        (warning,) = check_schedules(databases=["default"])
        assert warning.id == "pygigo.W003" and "'check-ghost'" in warning.msg
    finally:
        row.delete()

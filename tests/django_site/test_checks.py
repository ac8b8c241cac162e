from __future__ import annotations

import pytest

from pygigo.django_site.checks import check_body_fits_the_broker, check_broker_url


def test_bad_broker_url_is_a_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "redis://127.0.0.1:6379/0?bogus=1")
    (error,) = check_broker_url()
    assert error.id == "pygigo.E001"
    assert "bogus" in error.msg


def test_good_broker_url_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "memory://")
    assert check_broker_url() == []


def test_a_body_limit_the_broker_cannot_carry_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "sqs://?region=us-east-1")  # 256 KiB messages
    monkeypatch.delenv("PYGIGO_CLAIM_CHECK_DIR", raising=False)
    (warning,) = check_body_fits_the_broker()
    assert warning.id == "pygigo.W004" and "PYGIGO_CLAIM_CHECK_DIR" in warning.hint
    monkeypatch.setenv("PYGIGO_MAX_BODY_BYTES", str(128 * 1024))
    assert check_body_fits_the_broker() == []

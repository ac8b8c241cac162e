from __future__ import annotations

import pytest

from pygigo.django_site.checks import check_broker_url


def test_bad_broker_url_is_a_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "redis://127.0.0.1:6379/0?bogus=1")
    (error,) = check_broker_url()
    assert error.id == "pygigo.E001"
    assert "bogus" in error.msg


def test_good_broker_url_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYGIGO_BROKER_URL", "memory://")
    assert check_broker_url() == []

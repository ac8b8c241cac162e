"""Settings read on every request or message are read once, and again after a change."""

from __future__ import annotations

import pytest
from django.test import override_settings

from pygigo.platform import settings as pygigo_settings
from pygigo.platform.envelope import key_id


def test_a_cached_setting_is_read_once_and_again_after_a_setting_changes() -> None:
    reads: list[str] = []

    @pygigo_settings.cached
    def reader() -> str:
        reads.append("read")
        return str(pygigo_settings.setting("PYGIGO_TEST_CACHED", "default"))

    assert [reader(), reader()] == ["default", "default"]
    assert len(reads) == 1
    with override_settings(PYGIGO_TEST_CACHED="overridden"):
        assert [reader(), reader()] == ["overridden", "overridden"]
    assert reader() == "default"
    assert len(reads) == 3


def test_a_failed_read_is_not_remembered() -> None:
    failures = iter([ValueError("not yet")])

    @pygigo_settings.cached
    def reader() -> str:
        for failure in failures:
            raise failure
        return "read"

    with pytest.raises(ValueError, match="not yet"):
        reader()
    assert reader() == "read"


def test_the_envelope_signer_follows_the_signing_keys() -> None:
    with override_settings(PYGIGO_SIGNING_KEYS=["first-key"]):
        assert pygigo_settings.signer().kid == key_id("first-key")
    with override_settings(PYGIGO_SIGNING_KEYS=["second-key", "first-key"]):
        assert pygigo_settings.signer().kid == key_id("second-key")


def test_the_forwarded_headers_follow_the_setting() -> None:
    with override_settings(PYGIGO_FORWARD_HEADERS=["X-Internal"]):
        assert pygigo_settings.forward_headers() == {"x-internal"}
    assert "accept" in pygigo_settings.forward_headers()

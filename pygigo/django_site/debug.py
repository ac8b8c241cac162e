"""Django's debug page and error reports without broker passwords.

``PYGIGO_BROKER_URL`` names no KEY or SECRET, so Django's own filter shows it (and the copy
of the environment in ``request.META`` under ``runserver``) with its password. This filter
shows it redacted; the default site sets it as ``DEFAULT_EXCEPTION_REPORTER_FILTER``.
"""

from __future__ import annotations

from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from pygigo.adapters.base import redact


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus broker URLs (any setting or variable ending in BROKER_URL)
    shown without their password."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and key.endswith("BROKER_URL") and isinstance(value, str):
            return redact(value)
        return super().cleanse_setting(key, value)

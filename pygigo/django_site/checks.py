"""`manage.py check` hooks: a bad broker URL or metrics setting is reported before anything runs."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core import checks

from pygigo.adapters.base import PygigoError, build_broker
from pygigo.platform import metrics
from pygigo.platform import settings as pygigo_settings


@checks.register(checks.Tags.compatibility)
def check_broker_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Parse PYGIGO_BROKER_URL and load its adapter (no connection is opened)."""
    url = pygigo_settings.broker_url()
    try:
        build_broker(url).close()
    except PygigoError as exc:
        return [checks.Error(str(exc), hint="Fix PYGIGO_BROKER_URL.", id="pygigo.E001")]
    return []


@checks.register(checks.Tags.compatibility)
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """PYGIGO_METRICS: only known keys, and prometheus_client installed when switched on."""
    try:
        enabled = metrics.config().enabled
    except PygigoError as exc:
        return [checks.Error(str(exc), hint="Fix PYGIGO_METRICS.", id="pygigo.E002")]
    if enabled and importlib.util.find_spec("prometheus_client") is None:
        return [
            checks.Error(
                "PYGIGO_METRICS is enabled but prometheus_client is not installed.",
                hint="pip install 'pygigo[metrics]', or switch metrics off.",
                id="pygigo.E002",
            )
        ]
    return []

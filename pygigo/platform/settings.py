"""Pygigo's settings, read from the environment first, then Django settings.

The environment wins so that one deployment artefact runs against any broker
(``PYGIGO_BROKER_URL=sqs://… pygigo worker …``) without editing settings files.

Settings:
  PYGIGO_BROKER_URL   the broker, by URL (default ``memory://``)
  PYGIGO_MIDDLEWARE   dotted paths of extra Dramatiq middleware classes, appended to
                      Dramatiq's defaults (the Django site adds invocation tracking this way,
                      so the platform never imports the site)
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_BROKER_URL = "memory://"


def setting(name: str, default: Any = None) -> Any:
    """``name`` from the environment, else from Django settings (if configured), else default."""
    if name in os.environ:
        return os.environ[name]
    from django.conf import settings

    if settings.configured:
        return getattr(settings, name, default)
    return default


def broker_url() -> str:
    return str(setting("PYGIGO_BROKER_URL") or DEFAULT_BROKER_URL)


def middleware_paths() -> list[str]:
    value = setting("PYGIGO_MIDDLEWARE") or []
    if isinstance(value, str):
        value = [path for path in value.split(",") if path.strip()]
    return [str(path).strip() for path in value]

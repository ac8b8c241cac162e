"""Pygigo's settings, read from the environment first, then Django settings.

The environment wins so that one deployment artefact runs against any broker
(``PYGIGO_BROKER_URL=sqs://… pygigo worker …``) without editing settings files.

Settings:
  PYGIGO_BROKER_URL   the broker, by URL (default ``memory://``)
  PYGIGO_MIDDLEWARE   dotted paths of extra Dramatiq middleware classes, appended to
                      Dramatiq's defaults (the Django site adds invocation tracking this way,
                      so the platform never imports the site)
  PYGIGO_SIGNING_KEYS envelope HMAC keys, newest first (default: derived from SECRET_KEY)
"""

from __future__ import annotations

import hashlib
import hmac
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


def signing_keys() -> list[str]:
    """``PYGIGO_SIGNING_KEYS`` (newest first; a comma-separated string in the environment), or
    one key derived from Django's SECRET_KEY, so a fresh project signs without extra set-up.

    Derived rather than SECRET_KEY itself: an envelope key that leaks must not also forge
    Django sessions and password-reset tokens.
    """
    value = setting("PYGIGO_SIGNING_KEYS")
    if isinstance(value, str):
        value = [key.strip() for key in value.split(",") if key.strip()]
    if value:
        return [str(key) for key in value]
    secret = setting("SECRET_KEY")
    if not secret:
        from ..adapters.base import ConfigurationError

        raise ConfigurationError(
            "No envelope signing key: set PYGIGO_SIGNING_KEYS (a list, newest first) or SECRET_KEY."
        )
    return [hmac.new(str(secret).encode(), b"pygigo.envelope.v1", hashlib.sha256).hexdigest()]

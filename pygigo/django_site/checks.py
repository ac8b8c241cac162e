"""`manage.py check` hooks: a bad broker URL or a public signing key is reported before
anything runs."""

from __future__ import annotations

from typing import Any

from django.core import checks

from pygigo.adapters.base import ConfigurationError, PygigoError, build_broker
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


@checks.register(checks.Tags.security)
def check_signing_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Outside DEBUG, a public or missing signing key would let anyone forge messages."""
    try:
        pygigo_settings.signing_keys()
    except ConfigurationError as exc:
        return [
            checks.Error(str(exc), hint="Set DJANGO_SECRET_KEY or PYGIGO_SIGNING_KEYS.", id="pygigo.E002")
        ]
    return []


@checks.register(checks.Tags.caches)
def check_rate_limit_cache(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A per-process cache counts each web process separately: the limit is multiplied."""
    from django.conf import settings

    from .api.auth import rate_limit_cache_alias

    if not pygigo_settings.setting("PYGIGO_RATE_LIMIT") or settings.DEBUG:
        return []
    backend = settings.CACHES.get(rate_limit_cache_alias(), {}).get("BACKEND", "")
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [
            checks.Warning(
                f"PYGIGO_RATE_LIMIT counts in a per-process cache ({backend}): every web process "
                "allows the full rate.",
                hint="Point PYGIGO_RATE_LIMIT_CACHE at a shared cache (Redis, Memcached or the database).",
                id="pygigo.W003",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility)
def check_body_fits_the_broker(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A body the API accepts but the broker cannot carry is refused with 413 on every call:
    say so at start-up, while the fix (a claim-check store, a lower limit) is one setting."""
    from .api.views import max_body_bytes

    try:
        broker = build_broker(pygigo_settings.broker_url())
    except PygigoError:
        return []  # check_broker_url reports it
    limit = broker.capabilities.max_message_bytes
    broker.close()
    if limit is None or pygigo_settings.setting("PYGIGO_CLAIM_CHECK_DIR") or max_body_bytes() < limit:
        return []
    return [
        checks.Warning(
            f"PYGIGO_MAX_BODY_BYTES ({max_body_bytes()}) is not below the {broker.scheme}:// broker's "
            f"message limit ({limit} bytes): large bodies will be refused with 413.",
            hint="Set PYGIGO_CLAIM_CHECK_DIR so large bodies travel by claim check, or lower "
            "PYGIGO_MAX_BODY_BYTES.",
            id="pygigo.W004",
        )
    ]

"""Minimal Django settings for codec tests, unless the project's settings already apply."""

from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="pygigo-tests-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

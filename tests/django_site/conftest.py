"""Minimal Django settings for the codec tests.

Skipped when the project's own settings apply (DJANGO_SETTINGS_MODULE set, or another
conftest configured Django first), so merging with a site-wide conftest needs no edits.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

if "DJANGO_SETTINGS_MODULE" not in os.environ and not settings.configured:
    settings.configure(
        SECRET_KEY="pygigo-tests-not-secret",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

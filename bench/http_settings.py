"""The default site plus the HTTP benchmark's reference view (``bench/http_urls.py``)."""

from __future__ import annotations

from pygigo.default_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.http_urls"

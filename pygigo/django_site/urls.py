"""Pygigo's HTTP API, for a project to mount: ``path("", include("pygigo.django_site.urls"))``.

The API plus health (``/healthz``, ``/readyz``) and ``/metrics``: the admin pages register
with the project's own admin site."""

from __future__ import annotations

from django.urls import path, re_path

from . import observability
from .api import openapi, views

urlpatterns = [
    path("healthz", observability.healthz, name="pygigo-health"),
    path("readyz", observability.readyz, name="pygigo-ready"),
    path("metrics", observability.metrics_view, name="pygigo-metrics"),
    path("openapi.json", openapi.openapi, name="pygigo-openapi"),
    path("fn", views.functions, name="pygigo-functions"),
    path("fn/<str:name>", views.invoke, name="pygigo-invoke"),
    path("invocations/<str:invocation_id>", views.invocation, name="pygigo-invocation"),
    path("invocations/<str:invocation_id>/result", views.invocation_result, name="pygigo-result"),
    # Anything else under the API's prefixes: JSON 404 even with DEBUG on (handler404 only
    # applies with DEBUG off), so API clients never get an HTML page.
    re_path(r"^(?:fn|invocations)(?:/.*)?$", views.not_found),
]

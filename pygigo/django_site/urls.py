from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path

from . import queues
from .api import openapi, views


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/pygigo-queues/", queues.queues_view, name="pygigo-queues"),
    path("admin/", admin.site.urls),
    path("healthz", health, name="pygigo-health"),
    path("openapi.json", openapi.openapi, name="pygigo-openapi"),
    path("fn", views.functions, name="pygigo-functions"),
    path("fn/<str:name>", views.invoke, name="pygigo-invoke"),
    path("invocations/<str:invocation_id>", views.invocation, name="pygigo-invocation"),
    path("invocations/<str:invocation_id>/result", views.invocation_result, name="pygigo-result"),
    # Anything else under the API's prefixes: JSON 404 even with DEBUG on (handler404 only
    # applies with DEBUG off), so API clients never get an HTML page.
    re_path(r"^(?:fn|invocations)(?:/.*)?$", views.not_found),
]

# JSON, not Django's HTML pages, for unknown URLs and last-resort errors.
handler404 = "pygigo.django_site.api.views.not_found"
handler500 = "pygigo.django_site.api.views.server_error"

"""An ordinary Django view sent to the workers with @dispatched (routed in test URLs)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from pygigo.django_site.dispatch import dispatched

from .functions import QUEUE


@dispatched(queue=QUEUE, public=True)
def greet(request: HttpRequest, who: str) -> HttpResponse:
    return HttpResponse(f"hello {who} via {request.method}", content_type="text/plain", status=200)


@dispatched(queue=QUEUE, public=True, sensitive=("token",))
def reset_password(request: HttpRequest, token: str) -> HttpResponse:
    return HttpResponse(f"token of {len(token)} characters", content_type="text/plain")


urlpatterns = [
    path("greet/<str:who>", greet),
    path("reset/<str:token>", reset_password),
    path("", include("pygigo.django_site.urls")),
]

"""URLs of the default project: the project's admin (Pygigo's admin pages, the queue page
included, register with it), a landing page, and Pygigo's API, mounted as a user's project
would mount it (``path("", include("pygigo.django_site.urls"))``)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from pygigo.django_site import landing

urlpatterns = [
    path("", landing.home, name="pygigo-home"),
    path("admin/", admin.site.urls),
    path("", include("pygigo.django_site.urls")),
]

# JSON, not Django's HTML pages, for unknown URLs and last-resort errors.
handler404 = "pygigo.django_site.api.views.not_found"
handler500 = "pygigo.django_site.api.views.server_error"

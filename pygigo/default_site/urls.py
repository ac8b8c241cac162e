"""URLs of the default project: the project's admin plus Pygigo's API, as a user's project would
mount them (``path("", include("pygigo.django_site.urls"))``)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from pygigo.django_site import dashboard, queues

urlpatterns = [
    path("admin/pygigo-queues/", queues.queues_view, name="pygigo-queues"),
    path("admin/pygigo-dashboard/", dashboard.page, name="pygigo-dashboard"),
    path("admin/pygigo-dashboard/data/", dashboard.data, name="pygigo-dashboard-data"),
    path("admin/", admin.site.urls),
    path("", include("pygigo.django_site.urls")),
]

# JSON, not Django's HTML pages, for unknown URLs and last-resort errors.
handler404 = "pygigo.django_site.api.views.not_found"
handler500 = "pygigo.django_site.api.views.server_error"

"""A small home page for a site serving Pygigo: the functions, and links to the admin, the
queue page, the dashboard and the OpenAPI document (each only if the project mounts it)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from pygigo.platform import runtime
from pygigo.platform.registry import registry


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def home(request: HttpRequest) -> HttpResponse:
    links = [
        ("Admin", _url("admin:index")),
        ("Queues", _url("admin:pygigo-queues")),
        ("Dashboard", _url("admin:pygigo-dashboard")),
        ("OpenAPI document", _url("pygigo-openapi")),
        ("Functions (JSON)", _url("pygigo-functions")),
    ]
    context = {
        # Plain values: templates call callables, and a Function is one.
        "functions": [
            {"name": fn.name, "queue": fn.queue, "public": fn.options.public}
            for fn in sorted(registry, key=lambda fn: fn.name)
        ],
        "links": [(label, url) for label, url in links if url],
        "broker": runtime.get_broker().scheme,
    }
    return render(request, "pygigo/landing.html", context)

from __future__ import annotations

from django.apps import AppConfig


class PygigoConfig(AppConfig):
    name = "pygigo.django_site"
    label = "pygigo"
    verbose_name = "Pygigo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

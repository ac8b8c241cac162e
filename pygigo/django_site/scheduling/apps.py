from __future__ import annotations

from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "pygigo.django_site.scheduling"
    label = "pygigo_scheduling"
    verbose_name = "Pygigo scheduling"
    default_auto_field = "django.db.models.BigAutoField"

"""Django's Tasks framework on Pygigo: ``TASKS = {"default": {"BACKEND":
"pygigo.django_site.tasks.PygigoBackend"}}`` runs ``@task`` functions on Pygigo workers, over
whichever broker ``PYGIGO_BROKER_URL`` names (Django 6 ``django.tasks``, or the
``django_tasks`` backport on Django 5.2)."""

from __future__ import annotations

from .backend import PygigoBackend, PygigoTask

__all__ = ["PygigoBackend", "PygigoTask"]

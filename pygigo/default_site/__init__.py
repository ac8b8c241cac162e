"""Pygigo's runnable default project: what `make dev`, `pygigo …` and the benchmarks serve when
DJANGO_SETTINGS_MODULE names nothing else.

It is a *project that uses the app*, kept apart from the reusable app itself
(``pygigo.django_site``), so that what the default project configures is never mistaken for
something the app provides: a user's own project must work with the app alone.
"""

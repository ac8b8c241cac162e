from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger("pygigo")

#: The worker middleware that records invocations; installing the app is enough to enable it.
TRACKER = "pygigo.django_site.tracking.InvocationTracker"


class PygigoConfig(AppConfig):
    name = "pygigo.django_site"
    label = "pygigo"
    verbose_name = "Pygigo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The platform knows neither Django requests nor the invocation table: plug them in.
        from pygigo.adapters.base import ConfigurationError
        from pygigo.platform import invocations
        from pygigo.platform import settings as pygigo_settings
        from pygigo.platform.worker import import_modules

        from . import checks, runner, store  # checks registers the system checks on import

        del checks

        invocations.set_http_runner(runner.run_http)
        invocations.set_invoker(store.invoke)
        pygigo_settings.register_middleware(TRACKER)
        # The web process must know the functions it exposes at /fn/<name>. A module that does
        # not import is the system check pygigo.E002's to report (with its hint), not a crash
        # of every management command, `manage.py check` included.
        try:
            import_modules(pygigo_settings.functions_modules())
        except ConfigurationError as exc:
            logger.error("%s", exc)

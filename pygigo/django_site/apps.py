from __future__ import annotations

from django.apps import AppConfig


class PygigoConfig(AppConfig):
    name = "pygigo.django_site"
    label = "pygigo"
    verbose_name = "Pygigo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The platform knows neither Django requests nor the invocation table: plug them in.
        from pygigo.platform import invocations
        from pygigo.platform import settings as pygigo_settings
        from pygigo.platform.worker import import_modules

        from . import checks, runner, store  # checks registers the system checks on import

        del checks

        invocations.set_http_runner(runner.run_http)
        invocations.set_invoker(store.invoke)
        # The web process must know the functions it exposes at /fn/<name>.
        import_modules(pygigo_settings.functions_modules())

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pygigo.adapters.base import PygigoError
from pygigo.platform import worker


class Command(BaseCommand):
    # The command runs them itself (pygigo.platform.worker.run_system_checks), like `pygigo …`.
    requires_system_checks: list[str] = []
    help = "Run Pygigo workers for the functions in the given modules (same options as `pygigo worker`)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        worker.add_arguments(parser, verbose_flag=False)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            code = worker.run_from_args(
                argparse.Namespace(verbose=max(0, options["verbosity"] - 1), **options)
            )
        except PygigoError as exc:
            raise CommandError(str(exc)) from exc
        if code:
            raise CommandError(f"workers exited with status {code}")

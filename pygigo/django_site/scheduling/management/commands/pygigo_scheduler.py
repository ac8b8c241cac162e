from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pygigo.adapters.base import PygigoError
from pygigo.platform import scheduler_cmd


class Command(BaseCommand):
    # The command runs them itself (pygigo.platform.worker.run_system_checks), like `pygigo …`.
    requires_system_checks: list[str] = []
    help = "Run a Pygigo scheduler replica (same options as `pygigo scheduler`)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        scheduler_cmd.add_scheduler_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scheduler_cmd.run_scheduler(
                options["modules"],
                lease_s=options["lease_s"],
                poll_s=options["poll_s"],
                holder=options["holder"],
            )
        except PygigoError as exc:
            raise CommandError(str(exc)) from exc

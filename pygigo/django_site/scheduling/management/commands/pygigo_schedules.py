from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pygigo.adapters.base import PygigoError
from pygigo.platform import scheduler_cmd


class Command(BaseCommand):
    help = "List Pygigo schedules with their next run times (same options as `pygigo schedules`)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        scheduler_cmd.add_schedules_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scheduler_cmd.print_schedules(options["modules"], self.stdout, count=options["count"])
        except PygigoError as exc:
            raise CommandError(str(exc)) from exc

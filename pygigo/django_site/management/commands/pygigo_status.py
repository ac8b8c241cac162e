from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand

from pygigo.cli import add_status_arguments
from pygigo.django_site import status
from pygigo.platform import worker


class Command(BaseCommand):
    help = "Queues, workers, scheduler leader, outbox backlog; exits 1 when something is unhealthy."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_status_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        worker.import_modules(options["modules"])
        code = status.run(
            self.stdout,
            as_json=options["json"],
            max_age_s=options["max_age"],
            workers_only=options["workers_only"],
        )
        if code:
            sys.exit(code)  # a probe reads the exit code

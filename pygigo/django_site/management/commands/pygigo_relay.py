from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from pygigo.django_site import outbox
from pygigo.platform import worker


class Command(BaseCommand):
    help = "Send invocations accepted while the broker was down (the outbox), in order."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("modules", nargs="*", help="functions modules (for per-function options)")
        parser.add_argument("--once", action="store_true", help="relay what is waiting, then exit")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
        parser.add_argument(
            "--min-age", type=float, default=outbox.DEFAULT_MIN_AGE_S, help="skip rows younger than this"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker.import_modules(options["modules"])
        if options["once"]:
            sent = outbox.relay(min_age_s=options["min_age"])
            self.stdout.write(f"relayed {sent}; {outbox.pending()} still waiting")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        outbox.run_forever(stop, interval_s=options["interval"], min_age_s=options["min_age"])

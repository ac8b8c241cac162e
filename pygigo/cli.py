"""The ``pygigo`` command: ``pygigo worker myproject.functions --processes 2 --threads 8``.

Every subcommand runs with Django configured: ``DJANGO_SETTINGS_MODULE`` if set, else Pygigo's
default site (``pygigo.django_site.settings``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .adapters.base import PygigoError
from .platform import worker

DEFAULT_SETTINGS = "pygigo.django_site.settings"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pygigo", description="Pygigo: Django functions on any broker.")
    commands = parser.add_subparsers(dest="command", required=True)
    worker.add_arguments(commands.add_parser("worker", help="run workers for your functions"))
    dev = commands.add_parser(
        "dev", help="web + worker (+ scheduler) on the database broker, for development"
    )
    dev.add_argument("modules", nargs="*", default=["examples.functions"], help="functions modules")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    return parser


def run_dev(args: argparse.Namespace) -> int:
    # The development stack needs no broker process: the database is the broker.
    os.environ.setdefault("PYGIGO_BROKER_URL", "db://")
    import django

    django.setup()
    from .django_site import devstack

    return devstack.run(host=args.host, port=args.port, modules=args.modules)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    try:
        if args.command == "worker":
            return worker.run_from_args(args)
        if args.command == "dev":
            return run_dev(args)
    except PygigoError as exc:
        print(f"pygigo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

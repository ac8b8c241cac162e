"""The ``pygigo`` command: ``pygigo worker myproject.functions --processes 2 --threads 8``,
``pygigo scheduler myproject.functions``, ``pygigo schedules``, ``pygigo migrate``,
``pygigo status``, ``pygigo dev``.

Every subcommand runs with Django configured: ``DJANGO_SETTINGS_MODULE`` if set, else Pygigo's
default site (``pygigo.default_site.settings``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .adapters.base import PygigoError
from .platform import scheduler_cmd, settings, worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pygigo", description="Pygigo: Django functions on any broker.")
    commands = parser.add_subparsers(dest="command", required=True)
    worker.add_arguments(commands.add_parser("worker", help="run workers for your functions"))
    scheduler_cmd.add_scheduler_arguments(
        commands.add_parser("scheduler", help="run a scheduler replica (cron and interval schedules)")
    )
    scheduler_cmd.add_schedules_arguments(
        commands.add_parser("schedules", help="list schedules with their next run times")
    )
    migrate = commands.add_parser(
        "migrate", help="create (SQLite: with its folder) and migrate the database Pygigo uses"
    )
    migrate.add_argument("--database", default="default", help="database alias (default: default)")
    status = commands.add_parser(
        "status", help="queues, workers, scheduler, outbox; exit 1 when unhealthy (a probe)"
    )
    add_status_arguments(status)
    dev = commands.add_parser(
        "dev", help="web + worker (+ scheduler) on the database broker, for development"
    )
    dev.add_argument("modules", nargs="*", default=["examples.functions"], help="functions modules")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--no-scheduler", action="store_true", help="do not start the scheduler")
    return parser


def run_migrate(database: str) -> int:
    settings.ensure_django()
    from django.conf import settings as django_settings
    from django.core.management import call_command

    config = django_settings.DATABASES.get(database, {})
    if str(config.get("ENGINE", "")).endswith("sqlite3"):
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    call_command("migrate", database=database, interactive=False)
    return 0


def run_dev(args: argparse.Namespace) -> int:
    # The development stack needs no broker process: the database is the broker. DEBUG is on
    # only here, so the default site's public development key is accepted only here.
    os.environ.setdefault("PYGIGO_BROKER_URL", "db://")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    # The web process imports them too (PYGIGO_FUNCTIONS), to serve /fn/<name>.
    os.environ.setdefault("PYGIGO_FUNCTIONS", ",".join(args.modules))
    settings.ensure_django()
    if importlib.util.find_spec("prometheus_client"):
        # Metrics on for the dashboard; the stack shares one multiprocess directory (devstack).
        os.environ.setdefault("PYGIGO_METRICS", '{"enabled": true, "port": null}')
    worker.run_system_checks()
    from .django_site import devstack

    return devstack.run(
        host=args.host, port=args.port, modules=args.modules, with_scheduler=not args.no_scheduler
    )


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """``pygigo status`` options (shared with ``manage.py pygigo_status``)."""
    parser.add_argument("modules", nargs="*", help="functions modules (besides PYGIGO_FUNCTIONS)")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.add_argument(
        "--max-age",
        type=float,
        metavar="SECONDS",
        help="unhealthy if a queue's oldest ready message is older",
    )
    parser.add_argument(
        "--workers-only", action="store_true", help="only this host's worker heartbeats (a liveness probe)"
    )


def run_status(args: argparse.Namespace) -> int:
    settings.ensure_django()
    worker.import_modules(args.modules)
    from .django_site import status

    return status.run(sys.stdout, as_json=args.json, max_age_s=args.max_age, workers_only=args.workers_only)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings.DEFAULT_DJANGO_SETTINGS)
    try:
        if args.command == "worker":
            return worker.run_from_args(args)
        if args.command == "scheduler":
            return scheduler_cmd.run_scheduler(
                args.modules, lease_s=args.lease_s, poll_s=args.poll_s, holder=args.holder
            )
        if args.command == "schedules":
            return scheduler_cmd.print_schedules(args.modules, sys.stdout, count=args.count)
        if args.command == "migrate":
            return run_migrate(args.database)
        if args.command == "status":
            return run_status(args)
        if args.command == "dev":
            return run_dev(args)
    except PygigoError as exc:
        print(f"pygigo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

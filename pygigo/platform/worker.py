"""Running workers: Dramatiq's process manager, with Pygigo's broker and fail-fast checks.

``run_worker`` checks everything it can in the parent process (the modules import, the queues
exist, the broker answers) and only then starts the worker processes under
:mod:`.supervisor`: each runs Dramatiq's CLI with one process (TERM/INT: graceful stop,
requeueing prefetched and delayed messages; HUP: reload), and one that dies is restarted with
back-off. Each worker process calls :func:`boot`, which configures Django and builds the
broker from settings.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import dramatiq

from ..adapters.base import ConfigurationError
from . import metrics, results, runtime, settings, supervisor
from .metrics import exposition
from .registry import registry

logger = logging.getLogger("pygigo.worker")

BOOT = f"{__name__}:boot"


def boot() -> None:
    """Entry point of each worker process (Dramatiq's "broker" argument): Django first, so
    functions may use the ORM, then the broker, bound to every registered function."""
    settings.ensure_django()
    dramatiq.set_broker(runtime.get_broker())


def run_system_checks(*, databases: Sequence[str] = ()) -> None:
    """Django's system checks (Pygigo's among them), as ``manage.py check`` runs them: errors
    stop the start with their hints, warnings and notes are printed and the start goes on."""
    from django.core import checks
    from django.db import DatabaseError

    try:
        found = checks.run_checks(databases=list(databases) or None)
    except DatabaseError as exc:
        # Django 6's model checks open the database (JSONField support): a SQLite file whose
        # folder is missing fails here, before the broker could say what to run.
        raise ConfigurationError(
            f"Cannot open the database ({exc}). Create and migrate it: `pygigo migrate` "
            "(or `manage.py migrate`)."
        ) from exc
    messages = [m for m in found if not m.is_silenced()]
    for message in messages:
        if not message.is_serious():
            print(f"pygigo: {message}", file=sys.stderr)
    errors = [str(m) for m in messages if m.is_serious()]
    if errors:
        raise ConfigurationError("System check failed:\n" + "\n".join(errors))


def import_modules(modules: Sequence[str]) -> None:
    if str(os.getcwd()) not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"Cannot import functions module {module!r}: {exc}. Run from the directory that "
                f"contains it, or make it importable (PYTHONPATH)."
            ) from exc


def check_queues(queues: Sequence[str]) -> None:
    known = registry.queues()
    unknown = sorted(set(queues) - known)
    if unknown:
        raise ConfigurationError(
            f"No function uses queue(s) {', '.join(unknown)}. Queues of the loaded functions: "
            f"{', '.join(sorted(known)) or 'none (did you name your functions module?)'}."
        )


def check_results(broker: dramatiq.Broker) -> None:
    """A function that keeps its return values needs a results backend on the worker too:
    without one, its callers would wait for results that are never stored."""
    needing = sorted(f.name for f in registry if f.options.store_results)
    if needing and not results.stores_results(broker):
        raise ConfigurationError(
            f"{', '.join(needing)}: store_results=True, but no results backend is configured. "
            "Set PYGIGO_RESULTS (e.g. 'redis://127.0.0.1:6379/0'), the same for every process."
        )


def preflight(modules: Sequence[str], queues: Sequence[str]) -> None:
    """Everything that can fail before forking: system checks, imports, queue names, reaching
    the broker."""
    settings.ensure_django()
    run_system_checks()
    import_modules(modules)
    if not len(registry):
        raise ConfigurationError(
            f"No @pygigo.function found in {', '.join(modules) or 'no module'}. "
            f"Name the module(s) that define your functions: pygigo worker myproject.functions"
        )
    check_queues(queues)
    broker = runtime.get_broker()
    try:
        check_results(broker)
        broker.ping()
    finally:
        # Worker processes build their own broker: connections must not cross a fork.
        runtime.reset()


def run_worker(
    modules: Sequence[str],
    *,
    processes: int = 2,
    threads: int = 8,
    queues: Sequence[str] = (),
    shutdown_timeout_s: float = 600.0,
    watch: str | None = None,
    pid_file: str | None = None,
    log_file: str | None = None,
    verbose: int = 0,
) -> int:
    """Start ``processes`` x ``threads`` workers for the functions in ``modules``; blocks.

    Returns the exit code (0 after a clean shutdown).
    """
    with metrics_for_workers() as serve_port:
        preflight(modules, queues)  # builds the process's metrics: after the directory is set
        argv = [BOOT, *modules, "--processes", "1", "--threads", str(threads)]
        argv += ["--worker-shutdown-timeout", str(int(shutdown_timeout_s * 1000))]
        if queues:
            argv += ["--queues", *queues]
        if watch:
            argv += ["--watch", watch]
        if log_file:
            argv += ["--log-file", log_file]
        argv += ["-v"] * verbose
        if serve_port:
            # The supervisor outlives every worker process: it serves their summed metrics.
            threading.Thread(target=exposition.serve_worker_port, name="pygigo-metrics", daemon=True).start()
        if pid_file:
            Path(pid_file).write_text(f"{os.getpid()}\n")
        try:
            return supervisor.supervise(supervisor.dramatiq_command(argv), processes)
        finally:
            if pid_file:
                Path(pid_file).unlink(missing_ok=True)


@contextlib.contextmanager
def metrics_for_workers() -> Iterator[bool]:
    """With metrics on: a multiprocess directory shared by the worker processes (unless
    ``PROMETHEUS_MULTIPROC_DIR`` names one already, e.g. shared with the web process). Yields
    whether this process should serve their sum on the metrics port."""
    settings.ensure_django()
    config = metrics.config()
    if not config.enabled:
        yield False
        return
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pygigo-metrics-")
    try:
        yield bool(config.port)
    finally:
        if own_dir:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            shutil.rmtree(own_dir, ignore_errors=True)


def _queue_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def add_arguments(parser: argparse.ArgumentParser, *, verbose_flag: bool = True) -> None:
    """The worker's command-line options (shared by ``pygigo worker`` and ``manage.py``,
    which has its own ``-v/--verbosity``)."""
    parser.add_argument(
        "modules", nargs="+", help="modules that define your functions, e.g. myproject.functions"
    )
    parser.add_argument("--processes", "-p", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", "-t", type=int, default=8, help="threads per process (default 8)")
    parser.add_argument(
        "--queues", "-Q", type=_queue_list, default=[], help="comma-separated queues to serve (default: all)"
    )
    parser.add_argument(
        "--shutdown-timeout", type=float, default=600.0, help="seconds running tasks get to finish on stop"
    )
    parser.add_argument("--watch", metavar="DIR", help="reload workers when Python files under DIR change")
    parser.add_argument("--pid-file", help="write the main process's PID here")
    parser.add_argument("--log-file", help="write logs here instead of stderr")
    if verbose_flag:
        parser.add_argument("--verbose", "-v", action="count", default=0, help="more log output")


def run_from_args(args: argparse.Namespace) -> int:
    return run_worker(
        args.modules,
        processes=args.processes,
        threads=args.threads,
        queues=args.queues,
        shutdown_timeout_s=args.shutdown_timeout,
        watch=args.watch,
        pid_file=args.pid_file,
        log_file=args.log_file,
        verbose=args.verbose,
    )

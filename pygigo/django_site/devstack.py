"""`make dev` / `pygigo dev`: web + worker (+ scheduler) on one machine, no external service.

Migrates the database, makes sure an admin user exists, starts each process in its own
process group, prints where to look, and on Ctrl-C (or SIGTERM) stops every process it
started — gracefully first, then by force — so nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

STOP_GRACE_S = 15.0


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def ensure_admin(var_dir: Path) -> str:
    """Create the `admin` superuser once; its password is kept in var/ for the next runs."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    secret_file = var_dir / "dev-admin-password"
    if user_model.objects.filter(username="admin").exists():
        if secret_file.exists():
            return f"admin / {secret_file.read_text().strip()}"
        return "admin (password unknown: python -m django changepassword admin)"
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser("admin", "admin@localhost", password)  # type: ignore[attr-defined]
    secret_file.write_text(password + "\n")
    secret_file.chmod(0o600)
    return f"admin / {password}"


def services(host: str, port: int, modules: Sequence[str], with_scheduler: bool) -> list[Service]:
    python = sys.executable
    stack = [
        Service("web", [python, "-m", "django", "runserver", f"{host}:{port}", "--noreload"]),
        Service("worker", [python, "-m", "pygigo", "worker", *modules, "--processes", "1", "--threads", "4"]),
    ]
    if with_scheduler:
        stack.append(Service("scheduler", [python, "-m", "pygigo", "scheduler", *modules]))
    return stack


def stop(stack: Sequence[Service]) -> None:
    running = [s for s in stack if s.process and s.process.poll() is None]
    for service in running:
        assert service.process
        # The leader only: it stops its own children (Dramatiq's main process forwards the
        # signal; a second one from us would make its workers skip their graceful stop).
        with contextlib.suppress(ProcessLookupError):
            service.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for service in running:
        assert service.process
        try:
            service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()
    for service in stack:
        if service.process:
            print(f"pygigo dev: {service.name} stopped (exit {service.process.returncode})", flush=True)


def run(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    modules: Sequence[str] = ("examples.functions",),
    with_scheduler: bool = False,
    example_curl: str | None = None,
) -> int:
    """Run the stack until Ctrl-C or until one process exits; returns an exit code."""
    var_dir = Path(settings.DATABASES["default"]["NAME"]).parent
    var_dir.mkdir(parents=True, exist_ok=True)
    call_command("migrate", interactive=False, verbosity=0)
    login = ensure_admin(var_dir)
    stack = services(host, port, modules, with_scheduler)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # One Prometheus multiprocess directory for web, worker and scheduler, so the dashboard
    # and /metrics sum every process of the stack; fresh per run, removed at the end.
    metrics_dir = tempfile.mkdtemp(prefix="pygigo-dev-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    try:
        for service in stack:
            service.process = subprocess.Popen(service.argv, start_new_session=True)
        url = f"http://{host}:{port}/"
        print(
            f"\nPygigo is running at {url}  (broker: {os.environ.get('PYGIGO_BROKER_URL', '')})", flush=True
        )
        print(f"  admin:  {url}admin/  login {login}", flush=True)
        print(f"  dashboard: {url}admin/pygigo-dashboard/", flush=True)
        if example_curl:
            print(f"  try:    {example_curl}", flush=True)
        print("  Ctrl-C stops everything.\n", flush=True)
        while True:
            for service in stack:
                assert service.process
                if service.process.poll() is not None:
                    print(
                        f"pygigo dev: {service.name} exited ({service.process.returncode}); stopping",
                        flush=True,
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\npygigo dev: stopping…", flush=True)
        return 0
    finally:
        stop(stack)
        shutil.rmtree(metrics_dir, ignore_errors=True)

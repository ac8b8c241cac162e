"""`make dev` / `pygigo dev`: web + worker (+ scheduler) on one machine, no external service.

Migrates the database, makes sure an admin user and a development API key exist, starts each
process in its own process group, prints where to look and a `curl` line that works for the
functions it serves, and on Ctrl-C (or SIGTERM) stops every process it started — gracefully
first, then by force — so nothing is left running. A worker or scheduler that dies is started
again (after ``RESTART_DELAY_S``); only the web server's exit ends the stack, so a crashing
function never takes the web server down.
"""

from __future__ import annotations

import contextlib
import inspect
import json
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

from pygigo.adapters.base import redact
from pygigo.platform.functions import Function
from pygigo.platform.registry import registry

from .models import ApiKey

STOP_GRACE_S = 15.0
RESTART_DELAY_S = 2.0


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


def ensure_api_key(var_dir: Path) -> str:
    """A development API key acting for `admin` (users' functions are private by default); the
    raw key is kept in var/ so the printed curl line keeps working across runs."""
    from django.contrib.auth import get_user_model

    key_file = var_dir / "dev-api-key"
    if key_file.exists():
        raw = key_file.read_text().strip()
        if ApiKey.lookup(raw) is not None:
            return raw
    _, raw = ApiKey.generate("pygigo dev", get_user_model().objects.filter(username="admin").first())
    key_file.write_text(raw + "\n")
    key_file.chmod(0o600)
    return raw


#: Sample JSON values for annotated parameters (anything else gets a number).
_SAMPLES: dict[object, object] = {str: "text", bool: True, float: 1.5}


def sample_arguments(function: Function[..., object]) -> list[object]:
    """Positional JSON arguments for ``function``'s required parameters: 1, 2, ... unless an
    annotation says otherwise (so `add(x, y)` gets `[1, 2]`)."""
    parameters = function.signature.parameters.values() if function.signature else []
    return [
        _SAMPLES.get(parameter.annotation, position)
        for position, parameter in enumerate(
            (
                p
                for p in parameters
                if p.default is inspect.Parameter.empty
                and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            ),
            start=1,
        )
    ]


def example_curl(base_url: str, api_key: str) -> str | None:
    """A curl line calling the first loaded function (declaration order) and waiting for it."""
    function = next(iter(registry), None)
    if function is None:
        return None
    line = (
        f"curl -s -X POST {base_url}fn/{function.name} -H 'Authorization: Bearer {api_key}' "
        "-H 'Prefer: wait=5'"
    )
    if function.is_view:
        return line
    return f"{line} -H 'Content-Type: application/json' -d '{json.dumps(sample_arguments(function))}'"


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
) -> int:
    """Run the stack until Ctrl-C or until one process exits; returns an exit code."""
    database = Path(settings.DATABASES["default"]["NAME"])
    var_dir = database.parent
    var_dir.mkdir(parents=True, exist_ok=True)
    # It holds sessions, API key hashes and invocation payloads: readable by its owner only
    # (SQLite gives its -wal and -shm files the same mode).
    database.touch(mode=0o600, exist_ok=True)
    database.chmod(0o600)
    call_command("migrate", interactive=False, verbosity=0)
    login = ensure_admin(var_dir)
    api_key = ensure_api_key(var_dir)
    stack = services(host, port, modules, with_scheduler)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)

    def start(service: Service) -> None:
        service.process = subprocess.Popen(service.argv, start_new_session=True)

    # One Prometheus multiprocess directory for web, worker and scheduler, so the dashboard
    # and /metrics sum every process of the stack; fresh per run, removed at the end.
    metrics_dir = tempfile.mkdtemp(prefix="pygigo-dev-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    try:
        for service in stack:
            start(service)
        url = f"http://{host}:{port}/"
        print(
            f"\nPygigo is running at {url}  (broker: {redact(os.environ.get('PYGIGO_BROKER_URL', ''))})",
            flush=True,
        )
        print(f"  admin:  {url}admin/  login {login}", flush=True)
        print(f"  dashboard: {url}admin/pygigo/invocation/dashboard/", flush=True)
        print(f"  API key (development, acts for admin): {api_key}", flush=True)
        curl = example_curl(url, api_key)
        if curl:
            print(f"  try:    {curl}", flush=True)
        print("  Ctrl-C stops everything.\n", flush=True)
        while True:
            for service in stack:
                assert service.process
                if service.process.poll() is None:
                    continue
                if service.name == "web":
                    print(f"pygigo dev: web exited ({service.process.returncode}); stopping", flush=True)
                    return 1
                print(
                    f"pygigo dev: {service.name} exited ({service.process.returncode}); "
                    f"restarting it in {RESTART_DELAY_S:g}s",
                    flush=True,
                )
                time.sleep(RESTART_DELAY_S)
                start(service)
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\npygigo dev: stopping…", flush=True)
        return 0
    finally:
        stop(stack)
        shutil.rmtree(metrics_dir, ignore_errors=True)

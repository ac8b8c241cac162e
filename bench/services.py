"""Things the db://, sqs:// and HTTP rows need around them, each created for one run and removed
afterwards, even on failure: a migrated SQLite file, a migrated PostgreSQL schema, a moto server,
a gunicorn server. All on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from bench.common import REPO_ROOT, BenchConfig, WorkerGroup

SETTINGS = "pygigo.default_site.settings"
#: AWS's SDK must never find real credentials or profiles: dummy keys for moto only.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: WorkerGroup) -> None:
    """Until ``url`` answers (any HTTP status) or ``timeout_s``; fails early if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if not proc.alive():
                raise RuntimeError(
                    f"server for {url} exited; log {proc.log_path}:\n{proc.log_tail()}"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not up after {timeout_s:.0f} s; log {proc.log_path}") from None
            time.sleep(0.1)


def migrate(env: dict[str, str]) -> None:
    """``python -m django migrate`` of the default site with ``env`` (its database settings)."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


class SqliteFiles:
    """Migrates one SQLite file once per run; ``fresh()`` hands out copies of it in a temp dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pygigo-bench-"))
        self._template: Path | None = None
        self._count = 0

    def fresh(self) -> dict[str, str]:
        """Env for a new, migrated, empty SQLite database (the default site's default alias)."""
        if self._template is None:
            template = self.dir / "template.sqlite3"
            migrate({"PYGIGO_SQLITE_PATH": str(template)})
            self._template = template
        self._count += 1
        path = self.dir / f"db{self._count}.sqlite3"
        shutil.copyfile(self._template, path)
        return {"DJANGO_SETTINGS_MODULE": SETTINGS, "PYGIGO_SQLITE_PATH": str(path)}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def sqlite_files() -> Iterator[SqliteFiles]:
    files = SqliteFiles()
    try:
        yield files
    finally:
        files.remove()


@contextmanager
def postgres_schema(run_id: str, dbname: str) -> Iterator[dict[str, str]]:
    """A schema ``bench_<run id>`` in ``dbname``, migrated; yields the env that makes it the default
    site's default database (libpq's ``PGOPTIONS`` sets the search path); dropped afterwards."""
    import psycopg

    schema = f"bench_{run_id}"
    conninfo = f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}"
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "PYGIGO_POSTGRES_NAME": dbname,
        "PYGIGO_DEFAULT_DATABASE": "postgres",
        "PGOPTIONS": f"-c search_path={schema}",
    }
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        migrate(env)
        yield env
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def moto_server(run_id: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``moto_server`` in its own process (so it does not share a GIL with the clients); yields
    the sqs:// URL for it and the env with dummy AWS keys. Stopping it discards every queue."""
    port = free_port()
    cfg = BenchConfig("sqs", "", "", f"bench_{run_id}_moto", 0, extra_env=AWS_TEST_ENV)
    argv = [sys.executable, "-c", "import sys; from moto.server import main; sys.exit(main())"]
    server = WorkerGroup([*argv, "-H", "127.0.0.1", "-p", str(port)], cfg, "moto_server")
    with server:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/", 30, server)
        url = f"sqs://?endpoint_url={quote(endpoint, safe='')}&region=us-east-1&prefix=bench-"
        yield url, AWS_TEST_ENV


@contextmanager
def gunicorn(cfg: BenchConfig, workers: int = 2) -> Iterator[int]:
    """``gunicorn pygigo.default_site.wsgi:application -w 2`` on a free port, env from ``cfg``."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "pygigo.default_site.wsgi:application",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    server = WorkerGroup(argv, cfg, "gunicorn")
    with server:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, server)
        yield port

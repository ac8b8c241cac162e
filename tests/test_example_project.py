"""The example project (``examples/mysite``: ``django-admin startproject`` plus the README's
"Add Pygigo to your Django project" steps), copied outside the repository and driven end to end
with its own ``manage.py``: an HTTP call answered through ``Prefer: wait`` on Redis and on
``db://``, a cron schedule fired by ``manage.py pygigo_scheduler`` (Redis), admin pages for staff.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require_service, wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mysite"
RUN = os.environ["PYGIGO_TEST_RUN"]
ADMIN_PAGES = [
    "/admin/",
    "/admin/pygigo/invocation/",
    "/admin/pygigo/invocation/queues/",
    "/admin/pygigo/apikey/",
    "/admin/pygigo_scheduling/schedule/",
]


class Project:
    """A copy of the example project and the processes started in it."""

    def __init__(self, root: Path, broker_url: str) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYGIGO_"))}
        self.env.update(PYGIGO_BROKER_URL=broker_url, DJANGO_SUPERUSER_PASSWORD="staff-pw")
        self.processes: list[subprocess.Popen[bytes]] = []

    def manage(self, *argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *argv],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    def start(self, *argv: str) -> None:
        log = (self.root / f"{argv[0]}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "manage.py", *argv],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "mysite"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "*.txt"))
    made = Project(root, request.param)
    try:
        yield made
    finally:
        made.stop()


def call_add(base: str, api_key: str) -> dict[str, object] | None:
    """``POST /fn/add`` with ``Prefer: wait``; None while the web server is not up yet."""
    request = urllib.request.Request(
        f"{base}/fn/add",
        data=b"[1, 2]",
        headers={
            "Content-Type": "application/json",
            "Prefer": "wait=10",
            "Authorization": f"Bearer {api_key}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return {"status": response.status, **json.loads(response.read())}
    except OSError:
        return None


def admin_statuses(base: str) -> dict[str, int]:
    """Log in through the admin's own form (CSRF included), then open each page."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{base}/admin/login/", timeout=20).read()
    token = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    form = {"username": "staff", "password": "staff-pw", "csrfmiddlewaretoken": token, "next": "/admin/"}
    opener.open(f"{base}/admin/login/", data=urllib.parse.urlencode(form).encode(), timeout=20).read()
    statuses = {}
    for page in ADMIN_PAGES:
        with opener.open(f"{base}{page}", timeout=20) as response:
            assert response.url.endswith(page), f"{page} redirected to {response.url} (not logged in?)"
            statuses[page] = response.status
    return statuses


@pytest.mark.slow
@pytest.mark.parametrize(
    ("project", "with_scheduler"),
    [(f"redis://127.0.0.1:6379/0?namespace=pygigo-example-{RUN}", True), ("db://", False)],
    ids=["redis", "db"],
    indirect=["project"],
)
def test_example_project_end_to_end(project: Project, with_scheduler: bool) -> None:
    if project.env["PYGIGO_BROKER_URL"].startswith("redis"):
        require_service("redis")
    checked = project.manage("check")
    assert "urls.W005" not in checked  # the include mounts no second admin
    assert "(pygigo.E" not in checked and "(pygigo.W" not in checked
    # Without the db:// broker's app its maintenance jobs are skipped, said at info level.
    assert ("(pygigo.I001) Maintenance job 'prune_dead_messages' is skipped" in checked) == with_scheduler
    project.manage("migrate")
    project.manage("createsuperuser", "--noinput", "--username", "staff", "--email", "staff@example.com")
    api_key = project.manage("pygigo_apikey", "create", "e2e").split()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    project.start("pygigo_worker", "mysite.functions", "--processes", "1", "--threads", "2")
    project.start("runserver", f"127.0.0.1:{port}", "--noreload")
    if with_scheduler:
        project.start("pygigo_scheduler")

    answers: list[dict[str, object]] = []
    wait_until(
        lambda: bool(answers.append(call_add(base, api_key) or {}) or answers[-1]),
        timeout=60,
        what="the web server to answer",
    )
    assert answers[-1] == {"status": 200, "result": 3}  # through the worker, tracked to the end
    assert admin_statuses(base) == dict.fromkeys(ADMIN_PAGES, 200)
    if with_scheduler:
        heartbeat = project.root / "heartbeat.txt"
        wait_until(heartbeat.exists, timeout=90, what="the every-minute cron schedule to fire")

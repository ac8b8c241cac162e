"""The README's commands, run as written: its quick start in an empty directory outside the
repository (Redis, RabbitMQ, db://), its integration steps against the example project, and its
links against the repository."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service, wait_until

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of ``language``, de-indented (blocks may sit in a list item)."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang == language:
            lines = body.splitlines()
            indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
            found.append("\n".join(line[indent:] for line in lines) + "\n")
    return found


def normalized_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_links_point_inside_the_repository() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert {"docs/integration.md", "docs/settings.md", "docs/deployment.md"} <= set(local)
    assert [t for t in local if not (REPO / t).exists()] == []
    assert "DESIGN.md" not in README


def test_integration_steps_are_what_the_example_project_does() -> None:
    """examples/mysite is `startproject` plus these steps; tests/test_example_project.py runs it."""
    (settings_block,) = blocks(section("Add Pygigo to your Django project"), "python")
    example = normalized_lines((REPO / "examples/mysite/mysite/settings.py").read_text())
    assert [line for line in normalized_lines(settings_block) if line not in example] == []
    include = 'path("", include("pygigo.django_site.urls"))'
    assert include in section("Add Pygigo to your Django project")
    assert include in (REPO / "examples/mysite/mysite/urls.py").read_text()


BROKERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "db": "db://",
}


@pytest.mark.slow
@pytest.mark.parametrize("broker", list(BROKERS))
def test_quick_start_runs_as_written(tmp_path: Path, broker: str) -> None:
    """The quick start's blocks, in an empty directory, with the broker its comment offers."""
    if broker != "db":
        require_service(broker)
    text = section("Quick start")
    (functions,) = blocks(text, "python")
    (script,) = blocks(text, "sh")
    path = functions.splitlines()[0].removeprefix("# ")
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(functions)
    export = re.search(r"^export PYGIGO_BROKER_URL=(\S+)", script, re.MULTILINE)
    assert export is not None and BROKERS[broker] in export.group(0) + script.split("\n", 1)[0]
    script = script.replace(export.group(0), f"export PYGIGO_BROKER_URL='{BROKERS[broker]}'")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYGIGO_"))}
    # The installed commands first (`pygigo`, `python`); Pygigo's data folder in the test's.
    env.update(PATH=f"{Path(sys.executable).parent}:{env['PATH']}", PYGIGO_HOME=str(tmp_path / "home"))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        # Files, not pipes: the background worker keeps its copy open after the script ends.
        shell = subprocess.Popen(
            ["bash", "-e", "-c", script],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # the background worker too: stopped below by its group
        )
    try:
        returncode = shell.wait(timeout=120)
    finally:
        os.killpg(shell.pid, signal.SIGTERM)  # the worker left running by `&`
        shell.wait()
        wait_until(lambda: not _group_alive(shell.pid), timeout=60, what="the quick start's worker to stop")
    assert returncode == 0, err.read_text()
    assert out.read_text().splitlines()[-1] == "3"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True

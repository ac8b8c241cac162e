"""`pygigo schedules` / `manage.py pygigo_schedules` and `pygigo scheduler` start-up errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from pygigo.django_site.scheduling.models import Schedule
from pygigo.platform.cron import Misfire
from pygigo.platform.scheduler_cmd import schedule_table
from pygigo.platform.schedules import ScheduleSpec, parse_timing

from .functions import report

RUN = os.environ["PYGIGO_TEST_RUN"]
NOW = datetime(2026, 3, 29, 0, 50, tzinfo=UTC)  # the night Paris springs forward


def columns(line: str, header: str) -> list[str]:
    """Cut ``line`` at the header's column starts."""
    starts = [
        i
        for i, ch in enumerate(header)
        if ch != " " and (i == 0 or (header[i - 1] == " " and header[i - 2] == " "))
    ]
    return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=False)]


def test_table_is_aligned_with_next_runs_in_the_schedule_zone() -> None:
    specs = {
        "paris": ScheduleSpec(
            "paris", "fn_a", parse_timing("30 2 * * *", "Europe/Paris"), misfire=Misfire.ONCE
        ),
        "paris-quarter": ScheduleSpec("paris-quarter", "fn_a", parse_timing("*/15 2 * * *", "Europe/Paris")),
        "a-much-longer-name": ScheduleSpec("a-much-longer-name", "fn_b", parse_timing("@every 90s")),
        "off": ScheduleSpec("off", "fn_c", parse_timing("@daily"), enabled=False, source="db"),
    }
    lines = schedule_table(specs, NOW, count=2).splitlines()
    header = lines[0]
    assert columns(header, header) == [
        "NAME", "FUNCTION", "SCHEDULE", "TIMEZONE", "DST", "MISFIRE", "ENABLED", "SOURCE", "NEXT RUNS"
    ]  # fmt: skip
    table = {columns(line, header)[0]: columns(line, header) for line in lines[1:]}
    assert table["paris"][1:8] == ["fn_a", "30 2 * * *", "Europe/Paris", "fixed-time", "once", "yes", "code"]
    # 02:30 does not exist that night: a fixed-time job runs at 03:00 CEST, as in cronie.
    assert table["paris"][8] == "2026-03-29 03:00:00 CEST, 2026-03-30 02:30:00 CEST"
    # Its wall-clock twin has no make-up run: 02:xx that night does not exist.
    assert table["paris-quarter"][4] == "wall-clock"
    assert table["paris-quarter"][8] == "2026-03-30 02:00:00 CEST, 2026-03-30 02:15:00 CEST"
    assert table["a-much-longer-name"][4] == "-"  # an interval is real time
    assert table["a-much-longer-name"][8] == "2026-03-29 00:51:00 UTC, 2026-03-29 00:52:30 UTC"
    assert table["off"][4:] == ["-", "skip", "no", "db", "-"]  # UTC has no DST


@pytest.mark.usefixtures("db")
def test_pygigo_schedules_lists_code_db_and_builtin_schedules() -> None:
    Schedule.objects.create(name=f"db-row-{RUN}", function=report.name, expression="0 6 * * 1-5")
    result = subprocess.run(
        [sys.executable, "-m", "pygigo", "schedules", "tests.scheduling.table_functions", "-n", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    paris = next(line for line in out.splitlines() if line.startswith(f"paris-quarter-{RUN}"))
    assert "Europe/Paris" in paris and "wall-clock" in paris
    assert f"half-minute-{RUN}" in out and "@every 30s" in out and "catch_up" in out
    assert f"db-row-{RUN}" in out and "0 6 * * 1-5" in out
    assert "pygigo.maintenance.report_dead_letters" in out


@pytest.mark.usefixtures("db")
def test_manage_py_pygigo_schedules() -> None:
    out = io.StringIO()
    call_command("pygigo_schedules", "tests.scheduling.table_functions", "--count", "2", stdout=out)
    line = next(line for line in out.getvalue().splitlines() if line.startswith(f"paris-quarter-{RUN}"))
    assert line.count(" CET") + line.count(" CEST") == 2


def test_pygigo_scheduler_fails_fast_on_a_bad_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pygigo", "scheduler", "no_such_schedules_module"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Cannot import functions module 'no_such_schedules_module'" in result.stderr

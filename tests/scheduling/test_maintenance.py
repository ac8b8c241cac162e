"""Built-in maintenance jobs: configuration, optional hooks, the dead-letter report."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.test import override_settings

from pygigo.adapters.base import ConfigurationError, QueueStats
from pygigo.adapters.memory import MemoryBroker
from pygigo.platform import maintenance
from pygigo.platform.envelope import ClaimCheckError, FileClaimCheckStore
from pygigo.platform.schedule_store import ENQUEUED, MemoryScheduleStore
from pygigo.platform.scheduler import Scheduler
from pygigo.platform.schedules import ScheduleRegistry
from tests.conftest import migrate_database

from .functions import QUEUE

CALLS: list[dict[str, Any]] = []


def fake_prune(**options: Any) -> int:
    """Stands in for a hook another part of Pygigo will provide."""
    CALLS.append(options)
    return 7


def test_defaults_are_all_on_and_each_can_be_switched_off_or_changed() -> None:
    config = maintenance.job_config(None)
    assert set(config) == {
        "prune_invocations",
        "prune_dead_messages",
        "requeue_expired_leases",
        "relay_outbox",
        "prune_schedule_runs",
        "report_dead_letters",
        "purge_claim_checks",
    }
    assert all(job["enabled"] for job in config.values())
    changed = maintenance.job_config(
        {"prune_invocations": False, "report_dead_letters": {"schedule": "0 * * * *"}}
    )
    assert not changed["prune_invocations"]["enabled"]
    assert changed["report_dead_letters"]["schedule"] == "0 * * * *"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vacuum": True}, "unknown job 'vacuum'"),
        ({"prune_invocations": {"ttl": 5}}, "unknown key\\(s\\) ttl"),
        ({"prune_invocations": "yes"}, "expected True, False or a dict"),
        ({"report_dead_letters": {"schedule": "0 0 * * 9"}}, "day-of-week field '9'"),
    ],
)
def test_bad_configuration_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        maintenance.maintenance_schedules(overrides)


def test_jobs_whose_app_is_not_installed_are_skipped_not_crashed() -> None:
    """A project on Redis without the db:// broker's app: its jobs are left out (the scheduler
    used to die importing that app's models) and the system check says so at info level."""
    migrate_database("default")
    apps = [a for a in settings.INSTALLED_APPS if a != "pygigo.adapters.db"]
    with override_settings(INSTALLED_APPS=apps):
        assert maintenance.skipped_jobs(None) == {"prune_dead_messages": "pygigo.adapters.db"}
        names = {spec.name for spec in maintenance.maintenance_schedules({"prune_invocations": False})}
        infos = [m for m in checks.run_checks() if m.id == "pygigo.I001"]
        # Recovers stuck invocations without touching the db:// broker's models.
        assert set(maintenance.requeue_expired_leases()) == {"invocations"}
    assert names == {
        f"pygigo.maintenance.{job}"
        for job in (
            "requeue_expired_leases",
            "relay_outbox",
            "prune_schedule_runs",
            "report_dead_letters",
            "purge_claim_checks",
        )
    }
    assert [m.level for m in infos] == [checks.INFO]
    assert "'prune_dead_messages' is skipped: it needs the app 'pygigo.adapters.db'" in infos[0].msg
    assert maintenance.skipped_jobs(None) == {}  # installed again: nothing skipped


def test_a_hook_that_does_not_import_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"hook 'pygigo_not_installed\.prune' cannot be imported"):
        maintenance.maintenance_schedules({"prune_invocations": {"hook": "pygigo_not_installed.prune"}})


def test_a_maintenance_job_runs_in_the_leader_once_per_slot(broker: MemoryBroker) -> None:
    CALLS.clear()
    specs = maintenance.maintenance_schedules(
        {
            "prune_invocations": {"hook": f"{__name__}.fake_prune", "options": {"ttl_s": 60}},
            "prune_dead_messages": False,
            "requeue_expired_leases": False,
            "relay_outbox": False,
            "prune_schedule_runs": False,
            "report_dead_letters": False,
            "purge_claim_checks": False,
        }
    )
    assert [spec.name for spec in specs] == ["pygigo.maintenance.prune_invocations"]
    store = MemoryScheduleStore()
    scheduler = Scheduler(store, code_schedules=ScheduleRegistry(), builtin=specs)
    scheduler.refresh(force=True)
    slot = datetime(2026, 1, 1, 10, 17, tzinfo=UTC)  # "17 * * * *"
    assert scheduler.fire("pygigo.maintenance.prune_invocations", now=slot + timedelta(seconds=1)) == [slot]
    assert scheduler.fire("pygigo.maintenance.prune_invocations", now=slot + timedelta(seconds=2)) == []
    assert CALLS == [{"ttl_s": 60}]
    assert store.runs[("pygigo.maintenance.prune_invocations", slot)].status == ENQUEUED
    assert broker.queues == {} or all(q.qsize() == 0 for q in broker.queues.values())  # nothing enqueued


class CountingBroker:
    scheme = "fake"

    def __init__(self, dead: dict[str, int]) -> None:
        self.dead = dead

    def queue_stats(self, queue_name: str) -> QueueStats:
        return QueueStats(ready=0, delayed=0, dead=self.dead.get(queue_name, 0))


def test_dead_letter_report_counts_per_queue_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pygigo.scheduler.maintenance")
    counts = maintenance.report_dead_letters(CountingBroker({QUEUE: 3}))  # type: ignore[arg-type]
    assert counts[QUEUE] == 3 and counts.get("default", 0) == 0
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and f"{QUEUE}=3" in warning[0].message


def test_dead_letter_report_on_a_real_broker(broker: MemoryBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pygigo.scheduler.maintenance")
    counts = maintenance.report_dead_letters()
    assert counts.get(QUEUE) == 0
    assert any("dead letters: none in" in r.message for r in caplog.records)


@pytest.mark.usefixtures("db")
def test_prune_schedule_runs_keeps_recent_runs_and_each_schedule_latest() -> None:
    from pygigo.django_site.scheduling.models import ScheduleRun
    from pygigo.django_site.scheduling.store import DjangoScheduleStore, prune_runs

    store = DjangoScheduleStore()
    now = datetime.now(UTC).replace(microsecond=0)
    old = [now - timedelta(days=d) for d in (30, 20, 10)]
    for slot in [*old, now]:
        store.claim_run("busy", slot, "me")
        store.finish_run("busy", slot, message_id="m", error=None, max_attempts=3)
    store.claim_run("rare", old[0], "me")  # its only (latest) run: kept however old
    store.finish_run("rare", old[0], message_id="m", error=None, max_attempts=3)
    store.claim_run("failing", old[1], "me")  # failed: still to be retried, kept
    store.finish_run("failing", old[1], message_id=None, error="down", max_attempts=3)
    store.claim_run("failing", now, "me")
    assert prune_runs(older_than_s=7 * 24 * 3600) == 3
    left = set(ScheduleRun.objects.values_list("schedule", "slot"))
    assert left == {("busy", now), ("rare", old[0]), ("failing", old[1]), ("failing", now)}
    assert store.last_fired("busy") == now and store.last_fired("rare") == old[0]


def test_claim_check_blobs_are_purged_after_the_message_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pygigo.django_site.runner import purge_claim_checks

    monkeypatch.setenv("PYGIGO_CLAIM_CHECK_DIR", str(tmp_path))
    monkeypatch.setenv("PYGIGO_MESSAGE_TTL_S", "3600")
    store = FileClaimCheckStore(tmp_path)
    old, fresh = store.put(b"old body"), store.put(b"fresh body")
    old_path = next(p for p in tmp_path.glob("??/*") if p.read_bytes() == b"old body")
    two_hours_ago = time.time() - 7200
    os.utime(old_path, (two_hours_ago, two_hours_ago))
    assert "pygigo.maintenance.purge_claim_checks" in {s.name for s in maintenance.maintenance_schedules()}
    assert purge_claim_checks() == 1
    assert store.get(fresh) == b"fresh body"
    with pytest.raises(ClaimCheckError):
        store.get(old)

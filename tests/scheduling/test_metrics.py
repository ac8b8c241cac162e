"""Scheduler metrics: leader, slots fired, misfires skipped or caught up (counted once),
lease renew failures — on the memory store with a hand-moved clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from pygigo.adapters.memory import MemoryBroker
from pygigo.platform import metrics
from pygigo.platform.cron import Misfire
from pygigo.platform.schedule_store import MemoryScheduleStore

from .conftest import FakeClock
from .test_runner import T0, make, spec


@pytest.fixture
def families(monkeypatch: pytest.MonkeyPatch) -> Iterator[metrics.Families]:
    monkeypatch.setenv("PYGIGO_METRICS", json.dumps({"enabled": True}))
    metrics.reset()
    on = metrics.families()
    assert on is not None
    yield on
    metrics.reset()


def sample(families: metrics.Families, name: str, **labels: str) -> float | None:
    value: float | None = families.registry.get_sample_value(name, labels)
    return value


def test_catch_up_after_downtime_counts_caught_up_and_skipped_slots(
    families: metrics.Families, broker: MemoryBroker, clock: FakeClock
) -> None:
    scheduler = make(MemoryScheduleStore(clock), clock, spec(misfire=Misfire.CATCH_UP, catch_up_cap=4))
    scheduler.fire("rep", now=T0 + timedelta(seconds=1))
    # Down until 12:31: 12:05 … 12:30 missed; the cap lets the latest 4 run late, 2 are lost.
    scheduler.fire_due(now=T0 + timedelta(minutes=31, seconds=0.5))
    scheduler.fire_due(now=T0 + timedelta(minutes=31, seconds=1))  # nothing new: nothing counted twice
    assert sample(families, "pygigo_scheduler_slots_fired_total", schedule="rep") == 5
    assert sample(families, "pygigo_scheduler_misfires_total", schedule="rep", outcome="caught_up") == 4
    assert sample(families, "pygigo_scheduler_misfires_total", schedule="rep", outcome="skipped") == 2


def test_skip_counts_the_missed_slots_when_the_next_slot_fires(
    families: metrics.Families, broker: MemoryBroker, clock: FakeClock
) -> None:
    scheduler = make(MemoryScheduleStore(clock), clock, spec(misfire=Misfire.SKIP))
    scheduler.fire("rep", now=T0 + timedelta(seconds=1))
    scheduler.fire_due(now=T0 + timedelta(minutes=31))  # the missed slots are skipped
    scheduler.fire_due(now=T0 + timedelta(minutes=35, seconds=0.1))
    assert sample(families, "pygigo_scheduler_slots_fired_total", schedule="rep") == 2
    assert sample(families, "pygigo_scheduler_misfires_total", schedule="rep", outcome="skipped") == 6
    assert sample(families, "pygigo_scheduler_misfires_total", schedule="rep", outcome="caught_up") is None


def test_leader_gauge_and_lease_renew_failures(
    families: metrics.Families, broker: MemoryBroker, clock: FakeClock
) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec())
    assert scheduler.renew_lease()
    assert sample(families, "pygigo_scheduler_leader") == 1

    def unreachable(holder: str, ttl_s: float) -> bool:
        raise OSError("database unreachable")

    store.acquire_lease = unreachable  # type: ignore[method-assign]
    assert not scheduler.renew_lease()
    assert sample(families, "pygigo_scheduler_leader") == 0
    assert sample(families, "pygigo_scheduler_lease_renew_failures_total") == 1

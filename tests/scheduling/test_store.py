"""The ScheduleStore contract, written once and run against the memory and database stores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pygigo.platform.schedule_store import (
    ABANDONED,
    CLAIMED,
    ENQUEUED,
    FAILED,
    MemoryScheduleStore,
    ScheduleStore,
)

SLOT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Case:
    """A store plus the two things the contract tests need to do behind its back."""

    def __init__(
        self,
        store: ScheduleStore,
        expire_lease: Callable[[], None],
        age_runs: Callable[[float], None],
        status: Callable[[str, datetime], tuple[str, int]],
    ) -> None:
        self.store, self.expire_lease, self.age_runs, self.status = store, expire_lease, age_runs, status


def memory_case() -> Case:
    now = [datetime.now(UTC)]
    store = MemoryScheduleStore(lambda: now[0])

    def expire() -> None:
        now[0] += timedelta(hours=1)

    def age(seconds: float) -> None:
        now[0] += timedelta(seconds=seconds)

    def status(name: str, slot: datetime) -> tuple[str, int]:
        run = store.runs[(name, slot)]
        return run.status, run.attempts

    return Case(store, expire, age, status)


def django_case() -> Case:
    from pygigo.django_site.scheduling.models import SchedulerLease, ScheduleRun
    from pygigo.django_site.scheduling.store import DjangoScheduleStore

    def expire() -> None:
        SchedulerLease.objects.update(expires_at=datetime.now(UTC) - timedelta(seconds=1))

    def age(seconds: float) -> None:
        for run in ScheduleRun.objects.all():
            run.claimed_at -= timedelta(seconds=seconds)
            if run.finished_at:
                run.finished_at -= timedelta(seconds=seconds)
            run.save()

    def status(name: str, slot: datetime) -> tuple[str, int]:
        run = ScheduleRun.objects.get(schedule=name, slot=slot)
        return run.status, run.attempts

    return Case(DjangoScheduleStore(), expire, age, status)


@pytest.fixture(params=["memory", "django"])
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    if request.param == "django":
        request.getfixturevalue("db")
        yield django_case()
    else:
        yield memory_case()


def test_lease_is_exclusive_renewable_and_taken_over_after_expiry(case: Case) -> None:
    store = case.store
    assert store.lease_holder() is None
    assert store.acquire_lease("a", 30)
    assert not store.acquire_lease("b", 30)
    assert store.acquire_lease("a", 30)  # renewal
    assert store.lease_holder() == "a"
    case.expire_lease()
    assert store.lease_holder() is None
    assert store.acquire_lease("b", 30) and store.lease_holder() == "b"
    assert not store.acquire_lease("a", 30)  # the old leader cannot renew
    store.release_lease("a")  # not the holder: no effect
    assert store.lease_holder() == "b"
    store.release_lease("b")
    assert store.lease_holder() is None and store.acquire_lease("a", 30)


def test_run_claim_is_unique_per_schedule_and_slot(case: Case) -> None:
    store = case.store
    assert store.last_fired("s") is None
    assert store.claim_run("s", SLOT, "a")
    assert not store.claim_run("s", SLOT, "b")
    assert not store.claim_run("s", SLOT.astimezone(ZoneInfo("Asia/Tokyo")), "b")  # same instant
    assert store.claim_run("other", SLOT, "b")
    assert store.claim_run("s", SLOT + timedelta(minutes=5), "a")
    assert store.last_fired("s") == SLOT + timedelta(minutes=5)


def test_finish_records_enqueued_failed_and_abandoned(case: Case) -> None:
    store = case.store
    store.claim_run("s", SLOT, "a")
    store.finish_run("s", SLOT, message_id="m1", error=None, max_attempts=3)
    assert case.status("s", SLOT) == (ENQUEUED, 1)
    later = SLOT + timedelta(minutes=1)
    store.claim_run("s", later, "a")
    store.finish_run("s", later, message_id=None, error="BrokerUnavailable: down", max_attempts=3)
    assert case.status("s", later) == (FAILED, 1)
    store.finish_run("s", later, message_id=None, error="again", max_attempts=1)
    assert case.status("s", later) == (ABANDONED, 1)


def test_retries_are_claimed_once_after_their_delay(case: Case) -> None:
    store = case.store
    store.claim_run("s", SLOT, "a")
    store.finish_run("s", SLOT, message_id=None, error="down", max_attempts=5)
    stale = SLOT + timedelta(minutes=1)
    store.claim_run("s", stale, "dead")  # claimed, never finished
    assert store.claim_retries("a", retry_delay_s=5, stale_after_s=60) == []
    case.age_runs(10)
    assert store.claim_retries("a", retry_delay_s=5, stale_after_s=60) == [("s", SLOT)]
    assert case.status("s", SLOT) == (CLAIMED, 2)
    assert store.claim_retries("b", retry_delay_s=5, stale_after_s=60) == []  # already re-claimed
    case.age_runs(100)
    won = store.claim_retries("b", retry_delay_s=5, stale_after_s=60)
    assert set(won) == {("s", SLOT), ("s", stale)}  # both now count as stale claims

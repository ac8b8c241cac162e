"""The scheduler runner on the memory store, with a controllable clock: firing through the
broker, misfire policies after downtime, failed enqueues retried, leadership. No waiting,
except one test that lets APScheduler's own timer fire (polled, bounded)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest

from pygigo.adapters.base import BrokerUnavailable
from pygigo.adapters.memory import MemoryBroker
from pygigo.platform.cron import Misfire
from pygigo.platform.schedule_store import ABANDONED, ENQUEUED, FAILED, MemoryScheduleStore
from pygigo.platform.scheduler import DEFAULT_GRACE_S, DEFAULT_LEASE_S, SKIPPED_SLOTS, Scheduler
from pygigo.platform.schedules import ScheduleRegistry, ScheduleSpec, parse_timing
from tests.conftest import wait_until

from .conftest import FakeClock
from .functions import QUEUE, report

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def spec(name: str = "rep", expression: str = "*/5 * * * *", **kw: Any) -> ScheduleSpec:
    kw.setdefault("function", report.name)
    return ScheduleSpec(name=name, timing=parse_timing(expression, kw.pop("tz", "UTC")), **kw)


def make(store: MemoryScheduleStore, clock: FakeClock, *specs: ScheduleSpec, **kw: Any) -> Scheduler:
    code = ScheduleRegistry()
    for s in specs:
        code.add(s)
    scheduler = Scheduler(store, code_schedules=code, clock=clock, **kw)
    scheduler.refresh(force=True)
    return scheduler


def queued(broker: MemoryBroker) -> list[dramatiq.Message[Any]]:
    q = broker.queues.get(QUEUE)
    return [dramatiq.Message.decode(data) for data in list(q.queue)] if q is not None else []


def test_a_slot_is_enqueued_once_with_its_arguments(broker: MemoryBroker, clock: FakeClock) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(kwargs={"day": "mon"}))
    clock.set(T0 + timedelta(milliseconds=40))
    assert scheduler.fire("rep") == [T0]
    assert scheduler.fire("rep") == []  # same slot again: the run record says it fired
    (message,) = queued(broker)
    assert message.actor_name == report.name and message.kwargs == {"day": "mon"}
    assert message.options["pygigo_slot"] == T0.isoformat()
    run = store.runs[("rep", T0)]
    assert run.status == ENQUEUED and run.message_id == message.message_id


def test_two_replicas_sharing_a_store_fire_a_slot_once(broker: MemoryBroker, clock: FakeClock) -> None:
    store = MemoryScheduleStore(clock)
    a, b = make(store, clock, spec(), holder="a"), make(store, clock, spec(), holder="b")
    clock.set(T0 + timedelta(seconds=0.2))
    results: list[list[datetime]] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.fire("rep"))) for s in (a, b, a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert len(queued(broker)) == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Down from 12:01 to 12:31:00.5, slots every 5 minutes: 12:05 ... 12:30 missed.
        (Misfire.SKIP, []),
        (Misfire.ONCE, [T0 + timedelta(minutes=30)]),
        (Misfire.CATCH_UP, [T0 + timedelta(minutes=m) for m in (15, 20, 25, 30)]),
    ],
)
def test_misfire_policy_after_downtime(
    broker: MemoryBroker, clock: FakeClock, policy: Misfire, expected: list[datetime]
) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(misfire=policy, catch_up_cap=4))
    assert scheduler.fire("rep", now=T0 + timedelta(seconds=1)) == [T0]
    # The process is gone for half an hour; a new leader's first pass decides.
    assert scheduler.fire_due(now=T0 + timedelta(minutes=31, seconds=0.5)).get("rep", []) == expected
    assert [m.options["pygigo_slot"] for m in queued(broker)[1:]] == [s.isoformat() for s in expected]


@pytest.mark.parametrize(
    ("policy", "skipped"),
    [(Misfire.SKIP, 6), (Misfire.ONCE, 5), (Misfire.CATCH_UP, 2)],  # of the six missed slots
)
def test_every_slot_a_misfire_policy_drops_is_logged_and_counted_once(
    broker: MemoryBroker, clock: FakeClock, policy: Misfire, skipped: int, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"skips-{policy.value}"
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(name=name, misfire=policy, catch_up_cap=4))
    scheduler.fire(name, now=T0 + timedelta(seconds=1))
    before = SKIPPED_SLOTS[(name, policy.value)]
    for _ in range(2):  # looking twice (timer and tick) counts the same slots once
        scheduler.fire_due(now=T0 + timedelta(minutes=31, seconds=0.5))
    assert SKIPPED_SLOTS[(name, policy.value)] - before == skipped
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert f"schedule {name}: skipped {skipped} slot(s)" in line and f"misfire={policy.value}" in line


def test_default_failover_is_shorter_than_the_grace_period() -> None:
    assert DEFAULT_LEASE_S * 4 / 3 < DEFAULT_GRACE_S


def test_skip_still_fires_a_slot_that_is_only_slightly_late(broker: MemoryBroker, clock: FakeClock) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(misfire=Misfire.SKIP), grace_s=10)
    scheduler.fire("rep", now=T0)
    late = T0 + timedelta(minutes=5, seconds=3)
    assert scheduler.fire("rep", now=late) == [T0 + timedelta(minutes=5)]
    assert scheduler.fire("rep", now=T0 + timedelta(minutes=10, seconds=11)) == []  # past grace: skipped


def test_a_new_schedule_does_not_fire_its_past(broker: MemoryBroker, clock: FakeClock) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(misfire=Misfire.CATCH_UP))
    assert scheduler.fire("rep", now=T0 + timedelta(minutes=4)) == []
    assert queued(broker) == []


def test_failed_enqueue_is_recorded_retried_then_abandoned(
    broker: MemoryBroker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(), max_attempts=3, retry_delay_s=5)
    real_enqueue = broker.enqueue
    down = True

    def enqueue(message: Any, *, delay: int | None = None) -> Any:
        if down:
            raise BrokerUnavailable("broker down for the test")
        return real_enqueue(message, delay=delay)

    monkeypatch.setattr(broker, "enqueue", enqueue)
    clock.set(T0)
    assert scheduler.fire("rep") == [T0]
    run = store.runs[("rep", T0)]
    assert run.status == FAILED and "broker down" in run.error
    assert scheduler.retry_failed() == 0  # not before retry_delay_s
    clock.advance(6)
    assert scheduler.retry_failed() == 1 and run.attempts == 2 and run.status == FAILED
    down = False
    clock.advance(6)
    assert scheduler.retry_failed() == 1
    assert run.status == ENQUEUED and len(queued(broker)) == 1

    down = True
    slot = T0 + timedelta(minutes=5)
    clock.set(slot)
    scheduler.fire("rep")
    for _ in range(4):
        clock.advance(6)
        scheduler.retry_failed()
    assert store.runs[("rep", slot)].status == ABANDONED and store.runs[("rep", slot)].attempts == 3


def test_a_run_left_claimed_by_a_dead_process_is_retried_after_the_stale_time(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec(), stale_after_s=60)
    clock.set(T0)
    assert store.claim_run("rep", T0, "dead-process")  # it died before enqueueing
    assert scheduler.fire("rep") == []
    clock.advance(61)
    assert scheduler.retry_failed() == 1
    assert store.runs[("rep", T0)].status == ENQUEUED and len(queued(broker)) == 1


def test_only_the_lease_holder_fires_and_a_follower_takes_over(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    store = MemoryScheduleStore(clock)
    a = make(store, clock, spec(), holder="a", lease_s=15)
    b = make(store, clock, spec(), holder="b", lease_s=15)
    assert a.renew_lease() and not b.renew_lease()
    assert a.is_leader and not b.is_leader and store.lease_holder() == "a"
    clock.set(T0)
    b._on_timer("rep", "")  # a follower's timer goes off: nothing happens
    assert queued(broker) == []
    a._on_timer("rep", "")
    assert len(queued(broker)) == 1
    # "a" stops renewing (crashed); the lease expires by the store's clock and "b" takes it.
    clock.advance(16)
    assert b.renew_lease() and not a.renew_lease()
    assert not a.is_leader  # it knows, and stops firing
    clock.set(T0 + timedelta(minutes=5))
    a._on_timer("rep", "")
    b._on_timer("rep", "")
    assert [m.options["pygigo_slot"] for m in queued(broker)] == [T0.isoformat(), clock.now.isoformat()]


def test_a_leader_that_cannot_reach_the_store_stops_firing(broker: MemoryBroker, clock: FakeClock) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec())
    assert scheduler.renew_lease()

    def unreachable(holder: str, ttl_s: float) -> bool:
        raise OSError("database unreachable")

    store.acquire_lease = unreachable  # type: ignore[method-assign]
    assert not scheduler.renew_lease() and not scheduler.is_leader


def test_stored_schedule_overrides_code_and_changes_are_picked_up(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    store = MemoryScheduleStore(clock)
    scheduler = make(store, clock, spec())
    assert not scheduler.refresh()  # nothing changed: no reload
    store.put_schedule(dataclasses.replace(spec(), enabled=False))
    assert scheduler.refresh()
    assert scheduler.schedules()["rep"].source == "db"
    assert scheduler.fire("rep", now=T0) == []  # disabled from the "admin"
    store.put_schedule(spec("other", "@every 10s", kwargs={"day": "x"}))
    assert scheduler.refresh() and "other" in scheduler.schedules()
    assert scheduler.fire("other", now=T0 + timedelta(seconds=0.1)) == [T0]


def test_a_schedule_for_an_unknown_function_is_left_out(broker: MemoryBroker, clock: FakeClock) -> None:
    store = MemoryScheduleStore(clock)
    store.put_schedule(spec("ghost", function="no_such_function"))
    scheduler = make(store, clock, spec())
    assert set(scheduler.schedules()) == {"rep"}


def test_apscheduler_jobs_follow_the_stored_schedules(broker: MemoryBroker) -> None:
    store = MemoryScheduleStore()
    scheduler = Scheduler(store, code_schedules=ScheduleRegistry(), poll_s=0.05, lease_s=3)
    store.put_schedule(spec("fast", "@every 1s"))
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # The real timer fires real slots (bounded wait, polled).
        wait_until(lambda: len(queued(broker)) >= 2, timeout=10, what="two slots of an @every 1s schedule")
        assert scheduler._aps is not None
        assert [job.id for job in scheduler._aps.get_jobs()] == ["fast"]
        store.put_schedule(dataclasses.replace(spec("fast", "@every 1s"), enabled=False))
        wait_until(
            lambda: scheduler._aps is not None and not scheduler._aps.get_jobs(), timeout=5, what="resync"
        )
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and store.lease_holder() is None  # released on the way out
    slots = [datetime.fromisoformat(m.options["pygigo_slot"]) for m in queued(broker)]
    assert slots == sorted(set(slots))

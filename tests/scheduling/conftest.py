"""Scheduling fixtures: the test SQLite database migrated once per session, emptied of
scheduler rows after each test; a memory broker; a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from pygigo.adapters.base import build_broker
from pygigo.adapters.memory import MemoryBroker
from pygigo.platform import runtime


@pytest.fixture(scope="session")
def migrated() -> None:
    call_command("migrate", interactive=False, verbosity=0)


@pytest.fixture
def db(migrated: None) -> Iterator[None]:
    from pygigo.django_site.scheduling.models import Schedule, SchedulerLease, ScheduleRun

    yield
    for model in (Schedule, ScheduleRun, SchedulerLease):
        model.objects.all().delete()


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    memory = build_broker("memory://", middleware=runtime.build_middleware())
    assert isinstance(memory, MemoryBroker)
    runtime.set_broker(memory)
    yield memory
    runtime.reset()


class FakeClock:
    """A clock the test moves by hand: ``clock()`` is now, ``clock.advance(s)`` moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return when


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 2, 12, 0, 0, 500_000, tzinfo=UTC))

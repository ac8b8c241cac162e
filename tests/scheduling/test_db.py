"""Database schedules: admin validation, the change token, and the scheduler picking rows up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from pygigo.adapters.memory import MemoryBroker
from pygigo.django_site.scheduling.models import Schedule, ScheduleRun
from pygigo.django_site.scheduling.store import DjangoScheduleStore
from pygigo.platform.cron import Misfire
from pygigo.platform.scheduler import Scheduler
from pygigo.platform.schedules import ScheduleRegistry

from .functions import cleanup, report

pytestmark = pytest.mark.usefixtures("db")


def row(**kw: object) -> Schedule:
    fields: dict[str, object] = {"name": "nightly", "function": report.name, "expression": "0 3 * * *"}
    fields.update(kw)
    return Schedule(**fields)


def errors_of(schedule: Schedule) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        schedule.full_clean()
    return info.value.message_dict


def test_valid_row_passes_and_becomes_a_spec() -> None:
    schedule = row(timezone="Europe/Paris", kwargs={"day": "mon"}, misfire="catch_up")
    schedule.full_clean()
    spec = schedule.to_spec()
    assert spec.misfire is Misfire.CATCH_UP and spec.source == "db" and dict(spec.kwargs) == {"day": "mon"}


def test_bad_expression_is_an_error_on_that_field_naming_the_cron_field() -> None:
    assert errors_of(row(expression="0 25 * * *")) == {
        "expression": ["hour field '25': value out of range 0-23"]
    }
    assert errors_of(row(expression="0 0 30 feb *")) == {
        "expression": [
            "'0 0 30 feb *' never fires: no month in feb has day 30 "
            "(February has at most 29 days; April, June, September and November 30)"
        ]
    }


def test_bad_timezone_unknown_function_and_json_shapes_are_field_errors() -> None:
    errors = errors_of(row(timezone="Nowhere/City", function="nope", args={"a": 1}, kwargs=[1]))
    assert errors["timezone"] == ["unknown timezone 'Nowhere/City'"]
    assert errors["function"][0].startswith("Unknown function 'nope'. Known functions:")
    assert report.name in errors["function"][0]
    assert set(errors) == {"timezone", "function", "args", "kwargs"}


def test_admin_form_shows_the_field_error() -> None:
    user_model = get_user_model()
    user_model.objects.filter(username="sched-admin").delete()
    user_model.objects.create_superuser("sched-admin", "a@example.com", "pw")  # type: ignore[attr-defined]
    client = Client()
    client.login(username="sched-admin", password="pw")
    form = {
        "name": "from-admin",
        "function": report.name,
        "expression": "*/15 * * * 9",
        "timezone": "UTC",
        "args": "[]",
        "kwargs": "{}",
        "enabled": "on",
        "misfire": "skip",
        "catch_up_cap": "100",
    }
    response = client.post("/admin/pygigo_scheduling/schedule/add/", form)
    assert response.status_code == 200  # re-rendered with errors, not saved
    assert "day-of-week field &#x27;9&#x27;: value out of range 0-7" in response.content.decode()
    assert not Schedule.objects.filter(name="from-admin").exists()
    form["expression"] = "*/15 * * * 5"
    assert client.post("/admin/pygigo_scheduling/schedule/add/", form).status_code == 302
    assert Schedule.objects.get(name="from-admin").expression == "*/15 * * * 5"
    assert client.get("/admin/pygigo_scheduling/schedule/").status_code == 200
    user_model.objects.filter(username="sched-admin").delete()


def test_change_token_moves_on_add_edit_delete_but_not_on_firing() -> None:
    store = DjangoScheduleStore()
    row(name="keeper").save()  # so that deleting the other one does not return to the start
    tokens = [store.changes_token()]
    schedule = row()
    schedule.save()
    tokens.append(store.changes_token())
    schedule.expression = "0 4 * * *"
    schedule.save()
    tokens.append(store.changes_token())
    assert store.claim_run("nightly", datetime(2026, 1, 1, 4, tzinfo=UTC), "me")
    assert store.changes_token() == tokens[-1]  # last_fired_slot written without moving updated_at
    assert Schedule.objects.get(name="nightly").last_fired_slot == datetime(2026, 1, 1, 4, tzinfo=UTC)
    schedule.delete()
    tokens.append(store.changes_token())
    assert all(before != after for before, after in itertools.pairwise(tokens))


def test_scheduler_picks_up_rows_without_restart_and_fires_them(broker: MemoryBroker) -> None:
    store = DjangoScheduleStore()
    scheduler = Scheduler(store, code_schedules=ScheduleRegistry(), grace_s=5)
    scheduler.refresh(force=True)
    assert scheduler.schedules() == {}
    row(name="db-cleanup", function=cleanup.name, expression="@every 10s").save()
    Schedule.objects.create(name="broken", function=report.name, expression="not cron")  # bypassed clean()
    assert scheduler.refresh()
    assert set(scheduler.schedules()) == {"db-cleanup"}  # the broken row is logged and ignored
    slot = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert scheduler.fire("db-cleanup", now=slot + timedelta(seconds=0.3)) == [slot]
    run = ScheduleRun.objects.get(schedule="db-cleanup")
    assert run.status == "enqueued" and run.message_id and run.slot == slot
    Schedule.objects.filter(name="db-cleanup").delete()
    assert scheduler.refresh() and scheduler.schedules() == {}

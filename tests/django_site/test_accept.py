"""The accept path: one INSERT shared with the publish (three writes per successful
invocation), a worker that gets the message before the accept commits waits for the commit, and
a message whose accept never committed is refused, never run."""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.db import connections, transaction
from django.db.backends.utils import CursorWrapper
from django.test import Client, override_settings

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site import store, tracking
from pygigo.django_site.models import Invocation, Status
from pygigo.platform.envelope import Envelope
from tests.conftest import migrate_database, require_service, wait_until

from . import functions

WRITE = re.compile(r'^\s*(INSERT INTO|UPDATE)\s+"pygigo_invocation"', re.IGNORECASE)


@pytest.fixture
def invocation_writes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """INSERTs and UPDATEs of the invocation table, from every thread (the worker's too)."""
    seen: Counter[str] = Counter()
    original = CursorWrapper._execute

    def counting(self: CursorWrapper, sql: str, *args: Any, **kwargs: Any) -> Any:
        if match := WRITE.match(sql):
            seen[match.group(1).split()[0].upper()] += 1
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(CursorWrapper, "_execute", counting)
    return seen


def test_a_successful_invocation_is_written_three_times(
    worker: dramatiq.Worker, invocation_writes: Counter[str]
) -> None:
    response = Client().post("/fn/fe_echo", data=b"{}", content_type="application/json")
    assert response.status_code == 202
    invocation_id = response.json()["id"]
    wait_until(lambda: Invocation.objects.get(id=invocation_id).status == Status.SUCCEEDED)
    # accept (INSERT, relayed already), start and finish (UPDATEs); no "relayed" UPDATE.
    assert invocation_writes == {"INSERT": 1, "UPDATE": 2}
    assert Invocation.objects.filter(id=invocation_id, relayed=True, wire="").exists()


def test_prefer_wait_answers_under_atomic_requests(worker: dramatiq.Worker) -> None:
    # Inside the request's transaction the row (and so the message) would wait for the
    # response to be built: every wait ran out. The accept view opts out of ATOMIC_REQUESTS.
    settings_dict = connections["default"].settings_dict
    saved = settings_dict["ATOMIC_REQUESTS"]
    settings_dict["ATOMIC_REQUESTS"] = True
    try:
        response = Client().post(
            "/fn/fe_echo", data=b"{}", content_type="application/json", headers={"Prefer": "wait=20"}
        )
    finally:
        settings_dict["ATOMIC_REQUESTS"] = saved
    assert response.status_code == 201, response.content  # fe_echo's own status
    assert response["Preference-Applied"] == "wait=20"


def test_inside_a_transaction_the_message_waits_for_the_commit(broker: PygigoBroker) -> None:
    with transaction.atomic():
        invocation, _ = store.submit(Envelope(function="fe_add", kind="call", args=(1, 2)), functions.fe_add)
        assert broker.queue_stats(functions.QUEUE).ready == 0
        assert not Invocation.objects.get(id=invocation.id).relayed
    assert broker.queue_stats(functions.QUEUE).ready == 1
    assert Invocation.objects.filter(id=invocation.id, relayed=True, wire="").exists()


def test_a_transaction_that_rolls_back_sends_nothing(broker: PygigoBroker) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        invocation, _ = store.submit(Envelope(function="fe_add", kind="call", args=(1, 2)), functions.fe_add)
        raise RuntimeError("the caller's transaction fails")
    assert broker.queue_stats(functions.QUEUE).ready == 0
    assert not Invocation.objects.filter(id=invocation.id).exists()


def test_a_message_whose_accept_never_committed_is_refused_not_run(
    broker: PygigoBroker, worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = broker.enqueue

    def publish_then_die(message: Any, *, delay: Any = None) -> Any:
        published(message, delay=delay)
        raise KeyboardInterrupt  # the web process dies between its publish and its commit

    monkeypatch.setattr(broker, "enqueue", publish_then_die)
    envelope = Envelope(function="fe_count", kind="call", args=("never",))
    with pytest.raises(KeyboardInterrupt):
        store.submit(envelope, functions.fe_count)
    monkeypatch.undo()
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1, what="the dead letter")
    assert functions.calls == []
    assert not Invocation.objects.filter(id=envelope.id).exists()


@pytest.fixture(params=["default", "postgres"])
def alias(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database the invocation table lives in: SQLite, or PostgreSQL through a router."""
    if request.param == "default":
        yield "default"
        return
    require_service("postgres")
    migrate_database("postgres")
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.ToPostgres"]):
        yield "postgres"


class ToPostgres:
    def db_for_read(self, model: type, **hints: Any) -> str:
        return "postgres"

    db_for_write = db_for_read


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_accept_settled_waits_for_the_accepting_transaction(alias: str, outcome: str) -> None:
    invocation_id = uuid.uuid4().hex
    answer: list[bool] = []
    probe = threading.Thread(target=lambda: answer.append(tracking.accept_settled(invocation_id)))
    dies = pytest.raises(RuntimeError) if outcome == "rollback" else contextlib.nullcontext()
    with dies, transaction.atomic(using=alias):
        Invocation.objects.using(alias).create(id=invocation_id, function="fe_add", queue="q")
        probe.start()
        # The probe blocks on this uncommitted row: it cannot have answered yet.
        wait_until(lambda: _probe_waits(alias, probe), what="the probe to wait on the row")
        assert not answer
        if outcome == "rollback":
            raise RuntimeError("the accepting request dies")
    probe.join(timeout=30)
    assert answer == [outcome == "commit"]
    # The probe's own row is always rolled back.
    assert Invocation.objects.using(alias).filter(id=invocation_id).exists() == (outcome == "commit")
    Invocation.objects.using(alias).filter(id=invocation_id).delete()


def _probe_waits(alias: str, probe: threading.Thread) -> bool:
    if alias == "default":
        return probe.is_alive()  # SQLite: it waits on the write lock (no view of waiters)
    with connections[alias].cursor() as cursor:
        # Inside a transaction the statistics views keep their first snapshot.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND application_name = current_setting('application_name')"
        )
        return bool(cursor.fetchone()[0])

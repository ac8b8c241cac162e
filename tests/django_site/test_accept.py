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
from django.utils import timezone

from pygigo.adapters.base import MessageTooLarge, PygigoBroker
from pygigo.django_site import store, tracking
from pygigo.django_site.models import Invocation, Status
from pygigo.platform import runtime
from pygigo.platform.envelope import Envelope
from tests.conftest import migrate_database, require_service, wait_until

from . import functions
from .test_api import TinyBroker

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


@pytest.mark.parametrize("in_transaction", [False, True], ids=["fast-path", "in-transaction"])
def test_the_accept_writes_the_row_the_orm_would(
    broker: PygigoBroker, alias: str, in_transaction: bool
) -> None:
    # The accept writes its row with a plain INSERT, not the ORM's save: same columns, same
    # model defaults, and the envelope kept masked.
    envelope = Envelope(
        function="fe_use_token",
        kind="http",
        method="POST",
        path="/fn/fe_use_token",
        headers=(("Cookie", "session=s3cret"), ("Accept", "x")),
        principal={"api_key_id": 7},
        idempotency_key=uuid.uuid4().hex,
    )
    atomic = transaction.atomic(using=alias) if in_transaction else contextlib.nullcontext()
    with atomic:
        invocation, created = store.submit(envelope, functions.fe_use_token)
    assert created and not invocation._state.adding and invocation._state.db == alias
    written = Invocation.objects.using(alias).get(id=envelope.id)
    assert written.envelope == invocation.envelope
    assert written.envelope["headers"] == [["Cookie", "***"], ["Accept", "x"]]
    assert written.envelope["principal"] == {"user_id": None, "api_key_id": 7, "is_staff": False}
    assert abs((timezone.now() - written.created_at).total_seconds()) < 60
    by_orm = Invocation.objects.using(alias).create(
        function="fe_use_token",
        queue=functions.QUEUE,
        principal="key:7",
        idempotency_key=envelope.idempotency_key + "-orm",
        relayed=True,
    )
    same = [
        f.attname for f in Invocation._meta.concrete_fields if f.name not in ("id", "created_at", "envelope")
    ]

    def columns(row: Invocation) -> dict[str, Any]:
        fresh = Invocation.objects.using(alias).get(id=row.id)
        return {name: getattr(fresh, name) for name in same if name != "idempotency_key"}

    assert columns(written) == columns(by_orm)
    Invocation.objects.using(alias).filter(id__in=[written.id, by_orm.id]).delete()


def test_a_call_without_secrets_keeps_the_json_it_signed(broker: PygigoBroker) -> None:
    envelope = Envelope(function="fe_add", kind="call", args=(1, 2))
    invocation, _ = store.submit(envelope, functions.fe_add)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT envelope FROM pygigo_invocation WHERE id = %s", [invocation.id.hex])
        (text,) = cursor.fetchone()
    assert text.encode() == envelope.encode()
    assert Invocation.objects.get(id=invocation.id).envelope == envelope.to_dict()


@pytest.mark.parametrize("in_transaction", [False, True], ids=["fast-path", "in-transaction"])
def test_a_message_the_broker_can_never_take_is_refused_and_not_recorded(in_transaction: bool) -> None:
    runtime.set_broker(TinyBroker(middleware=runtime.build_middleware(), fail_fast_default=False))
    envelope = Envelope(function="fe_count", kind="call", args=("x" * 5000,))
    try:
        with (
            pytest.raises(MessageTooLarge),
            transaction.atomic() if in_transaction else contextlib.nullcontext(),
        ):
            store.submit(envelope, functions.fe_count)
    finally:
        runtime.reset()
    assert not Invocation.objects.filter(id=envelope.id).exists()

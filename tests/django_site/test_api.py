"""The HTTP API in-process: Django's test client, a memory broker, an in-process worker."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.utils import timezone

from pygigo.adapters.base import Capabilities, PygigoBroker
from pygigo.adapters.memory import MemoryBroker
from pygigo.django_site import outbox, store
from pygigo.django_site.models import ApiKey, Invocation, Status
from pygigo.platform import invocations, runtime
from pygigo.platform.envelope import Envelope
from pygigo.platform.invocations import InvocationFailed

from . import functions


def _user(name: str, *, staff: bool = False) -> Any:
    """A user; ``staff``: with the permissions staff need to see others' invocations."""
    username = f"{name}-{uuid.uuid4().hex[:8]}"
    user = get_user_model().objects.create_user(username, password="pw", is_staff=staff)
    if staff:
        user.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_invocation", "change_invocation"])
        )
    return user


@pytest.fixture
def key_client() -> tuple[Client, Any]:
    user = _user("keyholder")
    _, raw = ApiKey.generate("test", user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}"), user


def test_post_returns_202_with_location_and_runs_the_view(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    response = Client().post("/fn/fe_echo?a=1&a=2", data=b"hi", content_type="text/plain")
    assert response.status_code == 202
    body = response.json()
    assert response["Location"] == f"/invocations/{body['id']}"
    assert body["status"] == "queued" and body["function"] == "fe_echo"
    token = {"Invocation-Token": response["Invocation-Token"]}
    pending = Client().get(f"/invocations/{body['id']}/result", headers=token)
    assert pending.status_code in (202, 201)  # 202 until the worker is done
    done = store.wait_for(body["id"], 10)
    assert done is not None and done.status == Status.SUCCEEDED
    result = Client().get(f"/invocations/{body['id']}/result", headers=token)
    assert result.status_code == 201 and result["X-Echo"] == "yes"
    assert result.json() == {"method": "POST", "query": "a=1&a=2", "body": "hi", "user": None, "cookie": None}


def test_prefer_wait_returns_the_functions_own_response(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    response = Client().put(
        "/fn/fe_echo", data=b"x", content_type="text/plain", headers={"Prefer": "wait=10"}
    )
    assert response.status_code == 201
    assert response["Preference-Applied"] == "wait=10"
    assert response.json()["method"] == "PUT"


def test_plain_function_takes_json_arguments_over_http(
    broker: PygigoBroker, worker: dramatiq.Worker, key_client: tuple[Client, Any]
) -> None:
    client, _ = key_client
    wait = {"Prefer": "wait=10"}
    positional = client.post("/fn/fe_add", data=b"[2, 3]", content_type="application/json", headers=wait)
    assert positional.status_code == 200 and positional.json() == {"result": 5}
    keywords = client.post(
        "/fn/fe_add", data=b'{"x": 4, "y": 5}', content_type="application/json", headers=wait
    )
    assert keywords.status_code == 200 and keywords.json() == {"result": 9}
    scalar = client.post("/fn/fe_add", data=b"7", content_type="application/json")
    assert scalar.status_code == 400 and scalar.json()["code"] == "bad_arguments"
    not_json = client.post("/fn/fe_add", data=b"x=1", content_type="text/plain")
    assert not_json.status_code == 400 and "array" in not_json.json()["detail"]


def test_arguments_that_do_not_bind_are_refused_at_the_door(
    broker: PygigoBroker, key_client: tuple[Client, Any]
) -> None:
    """Refused with 400 naming the parameter, not accepted and retried into the dead letters."""
    client, _ = key_client
    before = Invocation.objects.count()
    for body, problem in [
        (b"[1]", "missing a required argument: 'y'"),
        (b'{"x": 1, "y": 2, "z": 3}', "got an unexpected keyword argument 'z'"),
        (b"[1, 2, 3]", "too many positional arguments"),
    ]:
        response = client.post("/fn/fe_add", data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["code"] == "bad_arguments"
        assert "fe_add(x: int, y: int) -> int" in response.json()["detail"]
        assert problem in response.json()["detail"]
    assert Invocation.objects.count() == before
    assert broker.queue_stats(functions.QUEUE).ready == 0


def test_prefer_wait_times_out_into_a_202(broker: PygigoBroker) -> None:
    response = Client().post("/fn/fe_echo", headers={"Prefer": "wait=0.05"})
    assert response.status_code == 202
    assert "Preference-Applied" not in response


def test_status_and_cancel(broker: PygigoBroker, key_client: tuple[Client, Any]) -> None:
    client, _ = key_client
    created = client.post("/fn/fe_private").json()
    status = client.get(f"/invocations/{created['id']}")
    assert status.status_code == 200 and status.json()["status"] == "queued"
    cancelled = client.delete(f"/invocations/{created['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.delete(f"/invocations/{created['id']}")
    assert again.status_code == 409 and again.json()["code"] == "not_cancellable"
    assert client.get(f"/invocations/{created['id']}/result").json()["code"] == "no_result"


def test_running_invocation_cannot_be_cancelled(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    accepted = Client().post("/fn/fe_block")
    created = accepted.json()

    # Wait for the worker to pick it up (the gate keeps it running).
    for _ in range(500):
        if Invocation.objects.get(id=created["id"]).status == Status.RUNNING:
            break
        store.wait_for(created["id"], 0.02)
    token = {"Invocation-Token": accepted["Invocation-Token"]}
    response = Client().delete(f"/invocations/{created['id']}", headers=token)
    assert response.status_code == 409
    functions.gate.set()
    assert store.wait_for(created["id"], 10).status == Status.SUCCEEDED  # type: ignore[union-attr]


def test_idempotency_key_returns_the_same_invocation(
    broker: PygigoBroker, key_client: tuple[Client, Any]
) -> None:
    client, _ = key_client
    key = uuid.uuid4().hex
    first = client.post("/fn/fe_private", headers={"Idempotency-Key": key}).json()
    second = client.post("/fn/fe_private", headers={"Idempotency-Key": key}).json()
    assert first["id"] == second["id"]
    assert Invocation.objects.filter(idempotency_key=key).count() == 1
    assert broker.queue_stats(functions.QUEUE).ready == 1  # sent once
    other = client.post("/fn/fe_echo", headers={"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    # Another principal with the same key gets its own invocation.
    other_client = Client(HTTP_AUTHORIZATION=f"Bearer {ApiKey.generate('other', _user('other'))[1]}")
    stranger = other_client.post("/fn/fe_echo", headers={"Idempotency-Key": key}).json()
    assert stranger["id"] != first["id"]
    # Anonymous callers cannot be told apart: a key would let one read another's result.
    anonymous = Client().post("/fn/fe_echo", headers={"Idempotency-Key": key})
    assert anonymous.status_code == 400 and anonymous.json()["code"] == "idempotency_key_needs_auth"


def test_invocations_are_private_to_their_principal_and_staff(
    broker: PygigoBroker, key_client: tuple[Client, Any]
) -> None:
    client, _ = key_client
    created = client.post("/fn/fe_private").json()
    other = Client()
    other.force_login(_user("other"))
    assert other.get(f"/invocations/{created['id']}").status_code == 404
    assert other.get(f"/invocations/{created['id']}/result").json()["code"] == "not_found"
    assert Client().get(f"/invocations/{created['id']}").status_code == 404
    staff = Client()
    staff.force_login(_user("staff", staff=True))
    assert staff.get(f"/invocations/{created['id']}").status_code == 200


def test_private_function_needs_authentication(broker: PygigoBroker) -> None:
    response = Client().post("/fn/fe_private")
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    bad = Client(HTTP_X_API_KEY="pgk_nope_nope").post("/fn/fe_private")
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_api_key"


def test_revoked_key_is_refused(broker: PygigoBroker) -> None:
    key, raw = ApiKey.generate("temp")
    assert Client(HTTP_X_API_KEY=raw).post("/fn/fe_private").status_code == 202
    key.revoke()
    assert Client(HTTP_X_API_KEY=raw).post("/fn/fe_private").status_code == 401
    assert len(key.hashed) == 64 and raw not in key.hashed


def test_function_list_depends_on_the_caller(broker: PygigoBroker, key_client: tuple[Client, Any]) -> None:
    anonymous = {f["name"] for f in Client().get("/fn").json()["functions"]}
    client, _ = key_client
    signed_in = {f["name"] for f in client.get("/fn").json()["functions"]}
    assert "fe_echo" in anonymous and "fe_private" not in anonymous
    assert {"fe_echo", "fe_private"} <= signed_in
    assert Client().post("/fn").status_code == 405


def test_errors_are_json_with_codes(broker: PygigoBroker) -> None:
    client = Client()
    missing = client.post("/fn/no_such_function")
    assert (missing.status_code, missing.json()["code"]) == (404, "function_not_found")
    bad_json = client.post("/fn/fe_echo", data=b"{nope", content_type="application/json")
    assert (bad_json.status_code, bad_json.json()["code"]) == (400, "malformed_json")
    wrong = client.put("/invocations/" + str(uuid.uuid4()))
    assert (wrong.status_code, wrong.json()["code"], wrong["Allow"]) == (
        405,
        "method_not_allowed",
        "GET, HEAD, DELETE",
    )
    assert client.get("/invocations/not-a-uuid").json()["code"] == "not_found"
    bad_key = client.post("/fn/fe_echo", headers={"Idempotency-Key": "x" * 300})
    assert bad_key.json()["code"] == "invalid_header"


@override_settings(PYGIGO_MAX_BODY_BYTES=100)
def test_too_large_is_413(broker: PygigoBroker) -> None:
    response = Client().post("/fn/fe_echo", data=b"x" * 101, content_type="text/plain")
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    assert Client().post("/fn/fe_echo", data=b"x" * 100, content_type="text/plain").status_code == 202


@override_settings(PYGIGO_RATE_LIMIT="3/60")
def test_rate_limit_per_key(broker: PygigoBroker) -> None:
    _, raw = ApiKey.generate("limited")
    _, raw2 = ApiKey.generate("other")
    client = Client(HTTP_X_API_KEY=raw)
    codes = [client.post("/fn/fe_private").status_code for _ in range(4)]
    assert codes == [202, 202, 202, 429]
    limited = client.post("/fn/fe_private")
    assert limited.json()["code"] == "rate_limited" and int(limited["Retry-After"]) >= 1
    assert Client(HTTP_X_API_KEY=raw2).post("/fn/fe_private").status_code == 202


def test_session_auth_enforces_csrf(broker: PygigoBroker) -> None:
    user = _user("browser")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    refused = client.post("/fn/fe_private")
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    client.get("/fn")  # any response; then fetch a token the normal way
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    ok = client.post("/fn/fe_private", headers={"X-CSRFToken": _mask_cipher_secret(secret)})
    assert ok.status_code == 202
    row = Invocation.objects.get(id=ok.json()["id"])
    assert row.principal == f"user:{user.pk}"


def test_secrets_are_not_forwarded_and_user_is_rebuilt(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    user = _user("viewer")
    client = Client()
    client.force_login(user)
    response = client.get("/fn/fe_echo", headers={"Prefer": "wait=10"})
    assert response.status_code == 201
    assert response.json()["cookie"] is None  # the session cookie stayed on the web side
    assert response.json()["user"] == user.get_username()


def test_failed_function_result_is_502(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    with pytest.raises(InvocationFailed):
        functions.fe_fails_once.invoke("z", wait=10)
    row = Invocation.objects.filter(function="fe_fails_once").order_by("-created_at").first()
    assert row is not None
    staff = Client()
    staff.force_login(_user("ops", staff=True))
    response = staff.get(f"/invocations/{row.id}/result")
    assert response.status_code == 502 and response.json()["invocation"]["status"] == "failed"


@override_settings(ROOT_URLCONF="tests.django_site.views")
def test_dispatched_view_runs_on_the_worker(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    accepted = Client().post("/greet/ann")
    assert accepted.status_code == 202 and accepted["Location"].startswith("/invocations/")
    waited = Client().post("/greet/bob", headers={"Prefer": "wait=10"})
    assert (waited.status_code, waited.content) == (200, b"hello bob via POST")
    assert Invocation.objects.get(id=accepted.json()["id"]).function == "tests.django_site.views.greet"


def test_openapi_document_is_served() -> None:
    document = Client().get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/fn", "/fn/{name}", "/invocations/{id}", "/invocations/{id}/result"} <= set(document["paths"])
    json.dumps(document)


def test_large_body_travels_by_claim_check(
    broker: PygigoBroker, worker: dramatiq.Worker, tmp_path: Any
) -> None:
    big = "é" * 5000
    with override_settings(PYGIGO_CLAIM_CHECK_DIR=str(tmp_path), PYGIGO_CLAIM_CHECK_THRESHOLD_BYTES=1000):
        response = Client().post(
            "/fn/fe_echo", data=big.encode(), content_type="text/plain", headers={"Prefer": "wait=10"}
        )
        assert response.status_code == 201 and response.json()["body"] == big
    row = Invocation.objects.filter(function="fe_echo").order_by("-created_at").first()
    assert row is not None and row.status == Status.SUCCEEDED
    assert row.envelope["claim_check"].startswith("sha256:") and row.envelope["body"] == ""
    assert any(tmp_path.rglob("*"))


@override_settings(DEBUG=True)
def test_unknown_api_urls_are_json_even_with_debug() -> None:
    for url in ("/fn/a/b", "/invocations/x/y/z", "/invocations/"):
        response = Client().get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"].startswith("application/json"), url
        assert response.json()["code"] == "not_found"


class TinyBroker(MemoryBroker):
    capabilities = Capabilities(max_message_bytes=3000, durable=False)


def test_message_too_large_for_the_broker_is_413_and_not_recorded() -> None:
    runtime.set_broker(TinyBroker(middleware=runtime.build_middleware(), fail_fast_default=False))
    try:
        before = Invocation.objects.count()
        response = Client().post("/fn/fe_echo", data=b"x" * 5000, content_type="text/plain")
        assert response.status_code == 413 and response.json()["code"] == "message_too_large"
        assert "PYGIGO_CLAIM_CHECK_DIR" in response.json()["detail"]
        assert Invocation.objects.count() == before
    finally:
        runtime.reset()


def test_relay_fails_what_the_broker_refuses_for_good_and_goes_on() -> None:
    broker = TinyBroker(middleware=runtime.build_middleware(), fail_fast_default=False)
    runtime.set_broker(broker)
    try:
        rows = []
        for arg in ("x" * 5000, "small"):  # the first can never fit this broker
            envelope = Envelope(function="fe_count", kind="call", args=(arg,))
            wire = invocations.envelope_message(envelope, functions.fe_count).args[0]
            rows.append(
                Invocation.objects.create(
                    id=uuid.UUID(envelope.id),
                    function="fe_count",
                    queue=functions.QUEUE,
                    kind="call",
                    wire=wire,
                    created_at=timezone.now() - timedelta(minutes=1),
                )
            )
        assert outbox.relay(min_age_s=0) == 1  # the small one, not blocked by the big one
        big, small = (Invocation.objects.get(id=row.id) for row in rows)
        assert big.status == Status.FAILED and big.error.startswith("undeliverable") and big.relayed
        assert small.relayed and broker.queue_stats(functions.QUEUE).ready == 1
    finally:
        runtime.reset()

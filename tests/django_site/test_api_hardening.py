"""HTTP defects found by probing (issue 11, items 4-7): methods, CSRF, deactivated users'
keys, staff permissions, bad JSON and bad lengths answered with 4xx, never 500."""

from __future__ import annotations

import uuid

import pytest
from django.core import checks
from django.core.cache.backends.locmem import LocMemCache
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.test import Client, override_settings

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site.api.auth import _count
from pygigo.django_site.api.openapi import DOCUMENT
from pygigo.django_site.models import ApiKey, Invocation

from .test_api import _user


def _key_client() -> Client:
    _, raw = ApiKey.generate("test", _user("keyholder"))
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "PUT"])
def test_only_declared_methods_invoke(broker: PygigoBroker, method: str) -> None:
    client = Client()
    client.force_login(_user("prober"))
    before = Invocation.objects.count()
    response = client.generic(method, "/fn/fe_private")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert Invocation.objects.count() == before


def test_a_get_that_invokes_is_csrf_checked(broker: PygigoBroker) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user("browser"))
    before = Invocation.objects.count()
    refused = client.get("/fn/fe_echo")  # fe_echo declares GET
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    assert Invocation.objects.count() == before
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    ok = client.get("/fn/fe_echo", headers={"X-CSRFToken": _mask_cipher_secret(secret)})
    assert ok.status_code == 202


def test_api_keys_of_deactivated_users_are_refused(broker: PygigoBroker) -> None:
    user = _user("leaver", staff=True)
    _, raw = ApiKey.generate("old", user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.post("/fn/fe_private").status_code == 202
    user.is_active = False
    user.save()
    refused = client.post("/fn/fe_private")
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_api_key")


def test_staff_read_others_invocations_only_with_the_permission(broker: PygigoBroker) -> None:
    owner = Client()
    owner.force_login(_user("owner"))
    created = owner.post("/fn/fe_private").json()
    bare_staff = Client()
    bare_staff_user = _user("staff-without-permission")
    bare_staff_user.is_staff = True
    bare_staff_user.save()
    bare_staff.force_login(bare_staff_user)
    assert bare_staff.get(f"/invocations/{created['id']}").status_code == 404
    assert bare_staff.delete(f"/invocations/{created['id']}").status_code == 404
    permitted = Client()
    permitted.force_login(_user("ops", staff=True))
    assert permitted.get(f"/invocations/{created['id']}").status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"[NaN]", b"[Infinity]", b"[1e400]", b'["\\ud800"]', b'{"\\udfff": 1}', b"[" * 500 + b"]" * 500],
    ids=["nan", "infinity", "overflow", "lone-surrogate", "surrogate-key", "deep"],
)
@pytest.mark.parametrize("function", ["fe_add", "fe_echo"])
def test_unportable_json_is_400_not_500(broker: PygigoBroker, body: bytes, function: str) -> None:
    client = _key_client()
    response = client.post(f"/fn/{function}", data=body, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "malformed_json")


@pytest.mark.parametrize("length", ["abc", "-1", "\u00b2"])
def test_bad_content_length_is_400(broker: PygigoBroker, length: str) -> None:
    client = _key_client()
    response = client.post(
        "/fn/fe_add", data=b"[1, 2]", content_type="application/json", CONTENT_LENGTH=length
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_header")


def test_chunked_body_is_411_not_read_as_empty(broker: PygigoBroker) -> None:
    client = _key_client()
    before = Invocation.objects.count()
    response = client.generic(
        "POST", "/fn/fe_add", data=b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked"
    )
    assert (response.status_code, response.json()["code"]) == (411, "length_required")
    assert Invocation.objects.count() == before


def test_openapi_documents_502_and_the_idempotency_key_pattern() -> None:
    operation = DOCUMENT["paths"]["/fn/{name}"]["post"]
    assert "502" in operation["responses"]
    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["schema"]["pattern"] and header["schema"]["maxLength"] == 255


def test_anonymous_invocations_are_readable_only_with_their_token(broker: PygigoBroker) -> None:
    first = Client().post("/fn/fe_block")
    second = Client().post("/fn/fe_block")
    token = first["Invocation-Token"]
    assert token and token != second["Invocation-Token"]
    url = f"/invocations/{first.json()['id']}"
    assert Client().get(url).status_code == 404  # another anonymous caller, no token
    assert Client().delete(url, headers={"Invocation-Token": second["Invocation-Token"]}).status_code == 404
    assert Client().get(url, headers={"Invocation-Token": token}).status_code == 200
    assert Client().delete(url, headers={"Invocation-Token": token}).json()["status"] == "cancelled"


@override_settings(PYGIGO_RATE_LIMIT="3/60")
def test_failed_authentications_and_unknown_functions_are_rate_limited(broker: PygigoBroker) -> None:
    guesser = Client(REMOTE_ADDR=f"192.0.2.{uuid.uuid4().int % 250 + 1}", HTTP_AUTHORIZATION="Bearer pgk_x_y")
    codes = [guesser.post("/fn/fe_private").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    prober = Client(REMOTE_ADDR=f"198.51.100.{uuid.uuid4().int % 250 + 1}")
    codes = [prober.post(f"/fn/no_such_{i}").status_code for i in range(4)]
    assert codes == [404, 404, 404, 429]


class _RacingCache(LocMemCache):
    """A window's first request that finds its count created (and maybe expired) between its
    incr and its add: what another process does meanwhile."""

    def __init__(self, others: int | None) -> None:
        super().__init__(f"racing-{uuid.uuid4().hex}", {})
        self.others = others
        self.tries = 0

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        self.tries += 1
        if self.tries == 1 or self.others is None:
            raise ValueError(f"Key '{key}' not found.")
        return self.others + delta

    def add(self, key: str, value: object, timeout: object = None, version: int | None = None) -> bool:
        return False


@pytest.mark.parametrize(("others", "count"), [(4, 5), (None, 1)], ids=["added-meanwhile", "then-expired"])
def test_a_window_count_survives_a_race_for_its_first_request(others: int | None, count: int) -> None:
    assert _count(_RacingCache(others), "k", 61) == count


def test_a_window_counts_its_requests() -> None:
    cache = LocMemCache(f"counting-{uuid.uuid4().hex}", {})
    assert [_count(cache, "k", 61) for _ in range(3)] == [1, 2, 3]


@override_settings(PYGIGO_RATE_LIMIT="3/60", DEBUG=False)
def test_a_per_process_rate_limit_cache_is_reported() -> None:
    ids = [message.id for message in checks.run_checks(tags=[checks.Tags.caches])]
    assert "pygigo.W004" in ids
    shared = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}}
    with override_settings(CACHES=shared):
        assert "pygigo.W004" not in [m.id for m in checks.run_checks(tags=[checks.Tags.caches])]


def _forwarded(client: Client, **headers: str) -> set[str]:
    accepted = client.post("/fn/fe_echo", data=b"x", content_type="text/plain", headers=headers)
    invocation = Invocation.objects.get(id=accepted.json()["id"])
    return {name.lower() for name, _ in invocation.envelope["headers"]}


def test_only_allow_listed_headers_are_forwarded(broker: PygigoBroker) -> None:
    sent = {"X-Auth-Token": "t", "X-CSRFToken": "c", "X-Internal": "i", "Accept": "text/html"}
    forwarded = _forwarded(Client(), **sent)
    assert forwarded == {"accept", "host"}  # Content-Type travels as the envelope's content_type
    with override_settings(PYGIGO_FORWARD_HEADERS=["X-Internal"]):
        assert _forwarded(Client(), **sent) == {"x-internal"}

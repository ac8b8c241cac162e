"""Envelope model, signing, header filter and claim check (pure Python, no Django)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pygigo.platform.envelope import (
    HOP_BY_HOP_HEADERS,
    SUPPORTED_VERSIONS,
    ClaimCheckError,
    ClaimCheckStore,
    Envelope,
    EnvelopeError,
    EnvelopeExpired,
    EnvelopeSignatureError,
    FileClaimCheckStore,
    Signer,
    canonical_json,
    encode_body,
    filter_headers,
    key_id,
    new_id,
    offload_body,
    pointer_for,
    restore_body,
    seal,
    sign,
    unseal,
    verify,
)

KEYS = ["new-key-0123456789", "old-key-9876543210"]

# -- strategies ---------------------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
pairs = st.lists(st.tuples(st.text(), st.text()), max_size=6)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"])
principals = st.none() | st.fixed_dictionaries(
    {
        "user_id": st.none() | st.integers() | st.text(),
        "api_key_id": st.none() | st.integers() | st.text(),
        "is_staff": st.booleans(),
    }
)
times = st.floats(min_value=0, max_value=4e9)


@st.composite
def http_envelopes(draw: st.DrawFn) -> Envelope:
    body, encoding = encode_body(draw(st.binary(max_size=300) | st.text(max_size=300).map(str.encode)))
    return Envelope(
        function=draw(st.text(min_size=1, max_size=30)),
        kind="http",
        method=draw(methods),
        path="/" + draw(st.text(max_size=40)),
        query=tuple(draw(pairs)),
        headers=tuple(draw(pairs)),
        body=body,
        body_encoding=encoding,
        content_type=draw(st.none() | st.text(max_size=40)),
        route_kwargs=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
        client_addr=draw(st.none() | st.sampled_from(["127.0.0.1", "::1", "10.1.2.3"])),
        principal=draw(principals),
        idempotency_key=draw(st.none() | st.text(max_size=20)),
        deadline=draw(st.none() | times),
        enqueued_at=draw(times),
        scheme=draw(st.sampled_from(["http", "https"])),
    )


@st.composite
def call_envelopes(draw: st.DrawFn) -> Envelope:
    return Envelope(
        function=draw(st.text(min_size=1, max_size=30)),
        kind="call",
        args=tuple(draw(st.lists(json_values, max_size=4))),
        kwargs=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
        principal=draw(principals),
        deadline=draw(st.none() | times),
        enqueued_at=draw(times),
    )


envelopes = http_envelopes() | call_envelopes()


def http(**kw: Any) -> Envelope:
    base: dict[str, Any] = {"function": "f", "kind": "http", "method": "POST", "path": "/fn/f"}
    return Envelope(**(base | kw))


# -- model --------------------------------------------------------------------------------


@given(envelopes)
def test_dict_and_bytes_round_trip(env: Envelope) -> None:
    assert Envelope.from_dict(env.to_dict()) == env
    assert Envelope.decode(env.encode()) == env
    # The wire form is plain JSON: no pickle, no custom types.
    assert json.loads(env.encode()) == env.to_dict()


def test_defaults_are_fresh_and_versioned() -> None:
    a, b = http(), http()
    assert a.version == 1
    assert a.id != b.id and len(a.id) == 32 and int(a.id, 16) >= 0
    assert a.trace_id != b.trace_id
    assert a.enqueued_at > 1.6e9
    assert a.principal is None and a.claim_check is None


def test_envelope_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        http().method = "GET"  # type: ignore[misc]


def test_unknown_field_is_rejected_by_name() -> None:
    d = http().to_dict() | {"pickle": "cos\nsystem"}
    with pytest.raises(EnvelopeError, match=r"unknown envelope fields \[.pickle.\]"):
        Envelope.from_dict(d)


@pytest.mark.parametrize("version", [0, 2, "1", None, True])
def test_version_mismatch_names_supported_versions(version: Any) -> None:
    d = http().to_dict() | {"version": version}
    with pytest.raises(EnvelopeError, match="supports versions 1") as info:
        Envelope.from_dict(d)
    assert SUPPORTED_VERSIONS == (1,)
    assert isinstance(info.value, ValueError)


def test_missing_version_and_required_fields() -> None:
    d = http().to_dict()
    with pytest.raises(EnvelopeError, match="version"):
        Envelope.from_dict({k: v for k, v in d.items() if k != "version"})
    with pytest.raises(EnvelopeError, match="'function'"):
        Envelope.from_dict({k: v for k, v in d.items() if k != "function"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "not-hex"}, "id"),
        ({"kind": "rpc"}, "kind"),
        ({"function": ""}, "function"),
        ({"method": "GE T"}, "method"),
        ({"method": None}, "method"),
        ({"path": "relative"}, "path"),
        ({"query": [["a"]]}, r"query\[0\]"),
        ({"headers": [["a", 1]]}, r"headers\[0\]"),
        ({"headers": "Host: x"}, "headers"),
        ({"body_encoding": "latin-1"}, "body_encoding"),
        ({"body_encoding": "base64", "body": "***"}, "base64"),
        ({"route_kwargs": {"x": object()}}, "route_kwargs"),
        ({"deadline": "tomorrow"}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"enqueued_at": None}, "enqueued_at"),
        ({"principal": {"user_id": 1, "is_superuser": True}}, "is_superuser"),
        ({"principal": {"user_id": 1.5}}, "user_id"),
        ({"principal": {"is_staff": "yes"}}, "is_staff"),
        ({"claim_check": "sha256:" + "0" * 64, "body": "x"}, "claim_check"),
        ({"args": [1]}, "args"),
        ({"scheme": "ftp"}, "scheme"),
        ({"script_name": "/mount"}, "script_name"),
    ],
)
def test_invalid_fields_raise_envelope_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_dict(http().to_dict() | changes)


@pytest.mark.parametrize(
    "changes",
    [{"method": "GET"}, {"path": "/x"}, {"body": "x"}, {"headers": [["A", "b"]]}, {"client_addr": "1.2.3.4"}],
)
def test_call_envelope_refuses_http_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError, match="only valid for kind='http'"):
        Envelope(function="f", kind="call", **changes)


@pytest.mark.parametrize("bad", [object(), {1: "int key"}, float("inf"), b"bytes", {1, 2}])
def test_call_args_must_be_json(bad: Any) -> None:
    with pytest.raises(EnvelopeError, match="args"):
        Envelope(function="f", kind="call", args=(bad,))
    with pytest.raises(EnvelopeError, match="kwargs"):
        Envelope(function="f", kind="call", kwargs={"k": bad})


def test_principal_is_normalised_to_three_keys() -> None:
    env = http(principal={"user_id": 7})
    assert env.principal == {"user_id": 7, "api_key_id": None, "is_staff": False}


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b"\xff\xfe", "null"])
def test_decode_garbage_raises_envelope_error(data: bytes | str) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.decode(data)


def test_lone_surrogate_fails_at_encode_with_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="JSON"):
        http(body="\ud800").encode()


@given(st.binary(max_size=200))
def test_body_bytes_round_trip_and_encoding_choice(data: bytes) -> None:
    body, encoding = encode_body(data)
    assert http(body=body, body_encoding=encoding).body_bytes() == data
    try:
        data.decode("utf-8")
        assert encoding == "utf-8"
    except UnicodeDecodeError:
        assert encoding == "base64"


def test_path_info_strips_script_name() -> None:
    env = http(path="/mount/fn/x", script_name="/mount/")
    assert env.path_info == "/fn/x"
    assert http(path="/fn/x").path_info == "/fn/x"


# -- signing ------------------------------------------------------------------------------


@given(envelopes)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_sign_verify_round_trip(env: Envelope) -> None:
    signed = sign(env.to_dict(), KEYS)
    assert signed["kid"] == key_id(KEYS[0])
    assert verify(json.loads(canonical_json(signed)), KEYS, now=0) == env
    assert unseal(seal(env, KEYS), KEYS, now=0) == env


def test_signature_is_hmac_sha256_over_canonical_json() -> None:
    env = http()
    d = env.to_dict()
    payload = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    expected = hmac.new(KEYS[0].encode(), payload, hashlib.sha256).hexdigest()
    assert sign(d, KEYS)["sig"] == expected
    assert key_id(KEYS[0]) == hashlib.sha256(KEYS[0].encode()).hexdigest()[:8]
    assert key_id(KEYS[0].encode()) == key_id(KEYS[0])


def test_unsigned_envelope_is_refused() -> None:
    with pytest.raises(EnvelopeSignatureError, match="unsigned"):
        verify(http().to_dict(), KEYS)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.update(function="admin_only"),
        lambda d: d.update(principal={"user_id": 1, "api_key_id": None, "is_staff": True}),
        lambda d: d.update(body="other"),
        lambda d: d.update(sig=d["sig"][:-1] + ("0" if d["sig"][-1] != "0" else "1")),
        lambda d: d.update(sig="nothex"),
        lambda d: d.update(sig=1234),
        lambda d: d.update(injected=True),
    ],
)
def test_forged_envelope_is_refused(tamper: Any) -> None:
    signed = sign(http().to_dict(), KEYS)
    tamper(signed)
    with pytest.raises(EnvelopeSignatureError):
        verify(signed, KEYS)


def test_signed_by_a_stranger_is_refused_with_unknown_kid() -> None:
    signed = sign(http().to_dict(), ["someone-elses-key"])
    with pytest.raises(EnvelopeSignatureError, match="unknown key id"):
        verify(signed, KEYS)
    # Lying about the kid does not help: the MAC is checked with our key.
    signed["kid"] = key_id(KEYS[0])
    with pytest.raises(EnvelopeSignatureError, match="does not match"):
        verify(signed, KEYS)


def test_key_rotation() -> None:
    old_only, rotated, new_only = [KEYS[1]], [KEYS[0], KEYS[1]], [KEYS[0]]
    in_flight = sign(http().to_dict(), old_only)
    assert verify(in_flight, rotated).function == "f"  # old-signed still accepted during rotation
    fresh = sign(http().to_dict(), rotated)
    assert fresh["kid"] == key_id(KEYS[0])  # the first key signs
    assert verify(fresh, new_only).function == "f"
    with pytest.raises(EnvelopeSignatureError, match="rotated out"):
        verify(in_flight, new_only)  # old key dropped: refused


def test_expiry_checked_with_now() -> None:
    signed = sign(http(deadline=1000.0).to_dict(), KEYS)
    assert verify(signed, KEYS, now=1000.0).deadline == 1000.0
    with pytest.raises(EnvelopeExpired, match="expired"):
        verify(signed, KEYS, now=1000.5)
    with pytest.raises(EnvelopeExpired):
        verify(signed, KEYS)  # default now = current time, long after 1970
    assert verify(sign(http().to_dict(), KEYS), KEYS).deadline is None  # no deadline, never expires


def test_signature_is_checked_before_deadline() -> None:
    signed = sign(http(deadline=1.0).to_dict(), KEYS)
    signed["deadline"] = 2.0  # a forger extending the deadline
    with pytest.raises(EnvelopeSignatureError):
        verify(signed, KEYS, now=10.0)


def test_verify_uses_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    signed = sign(http().to_dict(), KEYS)
    verify(signed, KEYS)
    assert any(signed["sig"] in pair for pair in calls)


@pytest.mark.parametrize("keys", [[], "a-single-string-key", [""]])
def test_bad_key_configuration_is_a_clear_value_error(keys: Any) -> None:
    with pytest.raises(ValueError, match="key"):
        sign(http().to_dict(), keys)
    with pytest.raises(ValueError, match="key"):
        verify({"kid": "x", "sig": "y"}, keys)


def test_signing_a_signed_dict_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="already signed"):
        sign(sign(http().to_dict(), KEYS), KEYS)


def test_valid_signature_over_unsupported_version_names_versions() -> None:
    d = http().to_dict() | {"version": 2}
    with pytest.raises(EnvelopeError, match="supports versions 1"):
        verify(sign(d, KEYS), KEYS)


# -- header filter ------------------------------------------------------------------------

SECRETS = [("Cookie", "sid=1"), ("authorization", "Bearer t"), ("Proxy-Authorization", "Basic x"),
           ("X-API-KEY", "k"), ("Set-Cookie", "a=b")]  # fmt: skip
HOPS = [("Connection", "keep-alive, X-Hop"), ("Keep-Alive", "5"), ("Transfer-Encoding", "chunked"),
        ("TE", "trailers"), ("Upgrade", "h2c"), ("Trailer", "X"), ("Proxy-Connection", "close"),
        ("X-Hop", "named by Connection")]  # fmt: skip
PLAIN = [("Accept", "*/*"), ("X-Trace", "1"), ("X-Trace", "2"), ("Host", "example.com")]


def test_secrets_stripped_unless_opted_in() -> None:
    assert filter_headers(SECRETS + PLAIN, forward_secrets=False) == PLAIN
    assert filter_headers(SECRETS + PLAIN, forward_secrets=True) == SECRETS + PLAIN


@pytest.mark.parametrize("forward_secrets", [False, True])
def test_hop_by_hop_always_dropped(forward_secrets: bool) -> None:
    assert {h.lower() for h, _ in HOPS[:-1]} == HOP_BY_HOP_HEADERS
    assert filter_headers(HOPS + PLAIN, forward_secrets=forward_secrets) == PLAIN


def test_allow_list_narrows_but_never_readmits() -> None:
    allow = ["x-trace", "Cookie", "Connection"]
    assert filter_headers(SECRETS + HOPS + PLAIN, forward_secrets=False, allow=allow) == PLAIN[1:3]
    assert filter_headers(SECRETS + PLAIN, forward_secrets=True, allow=allow) == [SECRETS[0], *PLAIN[1:3]]


@given(st.lists(st.tuples(st.sampled_from(["X-A", "x-a", "X-B", "Accept"]), st.text()), max_size=10))
def test_filter_keeps_order_and_repeats(headers: list[tuple[str, str]]) -> None:
    assert filter_headers(headers, forward_secrets=False) == headers


# -- claim check --------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> FileClaimCheckStore:
    return FileClaimCheckStore(tmp_path / "blobs")


def test_store_is_content_addressed_and_idempotent(store: FileClaimCheckStore) -> None:
    assert isinstance(store, ClaimCheckStore)
    p1, p2 = store.put(b"hello"), store.put(b"hello")
    assert p1 == p2 == pointer_for(b"hello") == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.get(p1) == b"hello"
    assert len([p for p in store.directory.rglob("*") if p.is_file()]) == 1
    store.delete(p1)
    store.delete(p1)  # idempotent
    with pytest.raises(ClaimCheckError, match="not found"):
        store.get(p1)


def test_put_leaves_no_temp_files_and_cleans_up_on_failure(
    store: FileClaimCheckStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put(b"a" * 10_000)
    assert not list(store.directory.rglob(".tmp-*"))

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"other")
    assert not list(store.directory.rglob(".tmp-*"))
    assert not any(p.is_file() for p in store.directory.rglob("*") if p.name == pointer_for(b"other")[7:])


def test_put_writes_via_rename(store: FileClaimCheckStore, monkeypatch: pytest.MonkeyPatch) -> None:
    renames: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    pointer = store.put(b"payload")
    assert len(renames) == 1 and renames[0][1].endswith(pointer[7:]) and ".tmp-" in renames[0][0]


@pytest.mark.parametrize("pointer", ["../../etc/passwd", "sha256:../x", "sha256:" + "G" * 64, "", "md5:00"])
def test_bad_pointers_rejected(store: FileClaimCheckStore, pointer: str) -> None:
    with pytest.raises(ClaimCheckError, match="invalid claim-check pointer"):
        store.get(pointer)
    with pytest.raises(ClaimCheckError):
        store.delete(pointer)


def test_corrupt_blob_detected(store: FileClaimCheckStore) -> None:
    pointer = store.put(b"original")
    path = store.directory / pointer[7:9] / pointer[7:]
    path.write_bytes(b"tampered")
    with pytest.raises(ClaimCheckError, match="corrupt"):
        store.get(pointer)


def test_purge_by_age(store: FileClaimCheckStore) -> None:
    old, new = store.put(b"old"), store.put(b"new")
    path = store.directory / old[7:9] / old[7:]
    os.utime(path, (1000.0, 1000.0))
    assert store.purge(60) == 1
    with pytest.raises(ClaimCheckError):
        store.get(old)
    assert store.get(new) == b"new"


@given(st.binary(min_size=0, max_size=3000) | st.text(max_size=1500).map(str.encode))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_offload_restore_round_trip(store: FileClaimCheckStore, data: bytes) -> None:
    body, encoding = encode_body(data)
    env = http(body=body, body_encoding=encoding)
    small = offload_body(env, store, max_inline_bytes=1024)
    if len(body.encode()) <= 1024:
        assert small is env
        return
    assert small.body == "" and small.claim_check == pointer_for(data)
    assert len(small.encode()) < len(env.encode())
    with pytest.raises(ClaimCheckError, match="restore_body"):
        small.body_bytes()
    # The pointer survives signing and the wire, and restores the exact same envelope.
    restored = restore_body(unseal(seal(small, KEYS), KEYS), store)
    assert restored == env
    assert restored.body_bytes() == data


def test_offload_leaves_calls_and_offloaded_envelopes_alone(store: FileClaimCheckStore) -> None:
    call = Envelope(function="f", kind="call", args=("x" * 5000,))
    assert offload_body(call, store, 10) is call
    once = offload_body(http(body="y" * 100), store, 10)
    assert offload_body(once, store, 10) is once
    assert restore_body(call, store) is call


class _LyingStore:
    def put(self, data: bytes) -> str:
        return pointer_for(data)

    def get(self, pointer: str) -> bytes:
        return b"something else"

    def delete(self, pointer: str) -> None:
        pass


def test_restore_checks_content_against_pointer() -> None:
    env = offload_body(http(body="z" * 100), _LyingStore(), 10)
    with pytest.raises(ClaimCheckError, match="wrong content"):
        restore_body(env, _LyingStore())


def test_platform_envelope_does_not_import_the_site_or_django_http() -> None:
    # Layering: platform never imports django_site; the codec stays free of HttpRequest.
    import subprocess

    code = (
        "import sys, pygigo.platform.envelope as e; "
        "assert not any(m.startswith(('pygigo.django_site', 'django.http')) for m in sys.modules), 'imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def test_a_sealed_envelope_is_the_json_it_signed_with_the_signature_after_it() -> None:
    env = http()
    sealed = Signer(KEYS).seal(env.encode())
    signed = json.loads(sealed)
    assert sealed.startswith(env.encode()[:-1] + b',"kid":')
    assert signed["sig"] == sign(env.to_dict(), KEYS)["sig"] and signed["kid"] == key_id(KEYS[0])
    assert unseal(sealed, KEYS, now=0) == env == unseal(canonical_json(signed), KEYS, now=0)


def test_new_ids_are_random_version_4_uuids() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.hex, parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)

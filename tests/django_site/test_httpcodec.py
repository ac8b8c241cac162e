"""Django request/response ⇄ envelope, including the full signed wire round trip."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import RequestFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from pygigo.django_site.httpcodec import capture_request, dict_to_response, rebuild_request, response_to_dict
from pygigo.platform.envelope import (
    ClaimCheckError,
    Envelope,
    EnvelopeError,
    FileClaimCheckStore,
    offload_body,
    restore_body,
    seal,
    unseal,
)

KEYS = ["k-new", "k-old"]
rf = RequestFactory()


def wire(request: HttpRequest, **kw: Any) -> HttpRequest:
    """capture → encode → sign → (bytes on a broker) → verify → decode → rebuild."""
    envelope = capture_request(request, function="fn", **kw)
    data = seal(envelope, KEYS)
    assert isinstance(data, bytes)
    return rebuild_request(unseal(data, KEYS))


def http_meta(request: HttpRequest) -> dict[str, Any]:
    # Host is synthesized when absent (compared via get_host); RequestFactory always sets
    # an empty Cookie header, which capture strips by default like any cookie.
    return {
        k: v
        for k, v in request.META.items()
        if k.startswith("HTTP_") and k not in ("HTTP_HOST", "HTTP_COOKIE")
    }


def assert_same_request(original: HttpRequest, rebuilt: HttpRequest) -> None:
    assert rebuilt.method == original.method
    assert rebuilt.path == original.path
    assert rebuilt.path_info == original.path_info
    assert list(rebuilt.GET.lists()) == list(original.GET.lists())
    assert http_meta(rebuilt) == http_meta(original)
    ignore = {"Host": "", "Cookie": ""}
    assert dict(rebuilt.headers) | ignore == dict(original.headers) | ignore
    assert rebuilt.get_host() == original.get_host()
    assert rebuilt.scheme == original.scheme
    assert rebuilt.body == original.body
    assert rebuilt.META.get("CONTENT_TYPE") == original.META.get("CONTENT_TYPE")
    assert rebuilt.META["REMOTE_ADDR"] == original.META["REMOTE_ADDR"]


# -- strategies ---------------------------------------------------------------------------

methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]) | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=10
)
# Paths must not start with "//" (urlparse would read a host there).
paths = st.text(max_size=30).filter(lambda s: not s.startswith("/")).map(lambda s: "/" + s)
queries = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=6)
header_names = st.from_regex(r"X-[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})?", fullmatch=True)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f")
)
headers = st.dictionaries(header_names, header_values, max_size=5).map(
    # Names equal after WSGI mangling would collide in META; keep one of each.
    lambda d: {k: v for k, v in {k.upper(): (k, v) for k, v in d.items()}.values()}
)
bodies = st.binary(max_size=500) | st.text(max_size=200).map(str.encode)


@given(method=methods, path=paths, query=queries, hdrs=headers, body=bodies)
@settings(deadline=None)
def test_round_trip_any_method_path_query_headers_body(
    method: str, path: str, query: list[tuple[str, str]], hdrs: dict[str, str], body: bytes
) -> None:
    original = rf.generic(
        method,
        quote(path, safe="/"),
        data=body,
        content_type="application/octet-stream",
        headers=hdrs,
        QUERY_STRING=urlencode(query, quote_via=quote),
    )
    envelope = capture_request(original, function="fn")
    # The envelope itself keeps order and repeats exactly (QueryDict would regroup them).
    assert list(envelope.query) == query
    assert envelope.path == path
    rebuilt = wire(original)
    assert_same_request(original, rebuilt)
    assert rebuilt.body == body  # empty, binary and text bodies alike


@given(
    fields=st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(max_size=20)), max_size=5),
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        st.tuples(
            st.from_regex(r"[a-zA-Z0-9_]{1,10}\.(txt|bin|png)", fullmatch=True), st.binary(max_size=2000)
        ),
        min_size=1,
        max_size=3,
    ),
)
@settings(deadline=None, max_examples=60)
def test_multipart_upload_round_trip(
    fields: list[tuple[str, str]], files: dict[str, tuple[str, bytes]]
) -> None:
    data: dict[str, Any] = {}
    for key, value in fields:
        data.setdefault(f"field-{key}", []).append(value)
    for key, (name, content) in files.items():
        data[f"file-{key}"] = SimpleUploadedFile(name, content, content_type="application/octet-stream")
    original = rf.post("/upload/ü?x=1", data=data)
    rebuilt = wire(original)
    assert_same_request(original, rebuilt)
    assert rebuilt.content_type == "multipart/form-data"
    assert list(rebuilt.POST.lists()) == list(original.POST.lists())
    assert sorted(rebuilt.FILES) == sorted(original.FILES) == sorted(f"file-{k}" for k in files)
    for key, (name, content) in files.items():
        uploaded = rebuilt.FILES[f"file-{key}"]
        assert isinstance(uploaded, UploadedFile)
        assert uploaded.read() == content
        assert uploaded.name == name


@given(form=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=6))
@settings(deadline=None)
def test_urlencoded_form_round_trip(form: list[tuple[str, str]]) -> None:
    body = urlencode(form, quote_via=quote)
    original = rf.post("/form", data=body, content_type="application/x-www-form-urlencoded")
    rebuilt = wire(original)
    assert list(rebuilt.POST.lists()) == list(original.POST.lists())
    assert [(k, v) for k, vs in rebuilt.POST.lists() for v in vs] == sorted(
        form, key=lambda kv: [k for k, _ in form].index(kv[0])
    )


def test_repeated_headers_are_kept_in_envelope_and_merged_like_wsgi() -> None:
    envelope = Envelope(
        function="fn",
        kind="http",
        method="GET",
        path="/",
        headers=(
            ("X-Tag", "a"),
            ("Accept", "text/html"),
            ("X-Tag", "b"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ),
    )
    again = unseal(seal(envelope, KEYS), KEYS)
    assert [v for k, v in again.headers if k == "X-Tag"] == ["a", "b"]
    request = rebuild_request(again)
    assert request.META["HTTP_X_TAG"] == "a, b"
    assert request.headers["Accept"] == "text/html"
    assert request.COOKIES == {"a": "1", "b": "2"}


def test_interleaved_repeated_query_keys_keep_their_order() -> None:
    original = rf.get("/q", QUERY_STRING="a=1&b=2&a=3&%C3%A9=%E2%82%AC")
    envelope = capture_request(original, function="fn")
    assert envelope.query == (("a", "1"), ("b", "2"), ("a", "3"), ("é", "€"))
    assert rebuild_request(envelope).GET.getlist("a") == ["1", "3"]


def test_secrets_are_stripped_by_default_and_forwarded_on_opt_in() -> None:
    hdrs = {"Cookie": "sessionid=abc", "Authorization": "Bearer t", "X-Api-Key": "k", "X-Keep": "yes"}
    original = rf.get("/", headers=hdrs | {"Connection": "close", "Upgrade": "h2c"})
    stripped = wire(original)
    assert stripped.COOKIES == {}
    assert "Authorization" not in stripped.headers and "X-Api-Key" not in stripped.headers
    assert "Connection" not in stripped.headers and "Upgrade" not in stripped.headers
    assert stripped.headers["X-Keep"] == "yes"
    forwarded = wire(original, forward_secrets=True)
    assert forwarded.COOKIES == {"sessionid": "abc"}
    assert forwarded.headers["Authorization"] == "Bearer t"
    assert forwarded.headers["X-Api-Key"] == "k"
    assert "Connection" not in forwarded.headers


def test_allow_headers_narrows_what_is_captured() -> None:
    original = rf.get("/", headers={"X-One": "1", "X-Two": "2"})
    envelope = capture_request(original, function="fn", allow_headers=["x-one"])
    assert [name for name, _ in envelope.headers] == ["X-One"]


def test_metadata_fields_are_captured() -> None:
    original = rf.get("/", REMOTE_ADDR="203.0.113.9", secure=True)
    principal = {"user_id": 3, "api_key_id": None, "is_staff": True}
    route = {"pk": uuid.UUID(int=5), "n": 2}
    envelope = capture_request(
        original, function="fn", principal=principal, idempotency_key="idem", deadline=9e9, route_kwargs=route
    )
    assert envelope.kind == "http" and envelope.function == "fn"
    assert envelope.principal == principal
    assert envelope.idempotency_key == "idem" and envelope.deadline == 9e9
    assert envelope.route_kwargs == {"pk": str(uuid.UUID(int=5)), "n": 2}
    assert envelope.client_addr == "203.0.113.9"
    rebuilt = rebuild_request(envelope)
    assert rebuilt.is_secure() and rebuilt.build_absolute_uri() == "https://testserver/"
    assert rebuilt.pygigo_envelope is envelope  # type: ignore[attr-defined]


def test_script_name_prefix_survives() -> None:
    original = rf.get("/fn/x", SCRIPT_NAME="/mount")
    assert original.path == "/mount/fn/x"
    envelope = capture_request(original, function="fn")
    assert envelope.script_name == "/mount"
    rebuilt = wire(original)
    assert (rebuilt.path, rebuilt.path_info) == ("/mount/fn/x", "/fn/x")


def test_capture_after_multipart_was_consumed_is_a_clear_error() -> None:
    original = rf.post("/up", data={"f": SimpleUploadedFile("a.txt", b"x")})
    original.POST  # noqa: B018 - the point is that something read it first
    with pytest.raises(EnvelopeError, match="capture the request before"):
        capture_request(original, function="fn")


def test_rebuild_refuses_call_envelopes_and_offloaded_bodies(tmp_path: Path) -> None:
    with pytest.raises(EnvelopeError, match="'call'"):
        rebuild_request(Envelope(function="fn", kind="call"))
    store = FileClaimCheckStore(tmp_path)
    payload = bytes(range(256)) * 40
    envelope = capture_request(rf.post("/big", data=payload, content_type="image/png"), function="fn")
    offloaded = offload_body(envelope, store, max_inline_bytes=1000)
    with pytest.raises(ClaimCheckError):
        rebuild_request(offloaded)
    rebuilt = rebuild_request(restore_body(unseal(seal(offloaded, KEYS), KEYS), store))
    assert rebuilt.body == payload


# -- responses ----------------------------------------------------------------------------


def test_response_round_trip_with_cookies_and_reason() -> None:
    response = HttpResponse(
        "héllo", status=418, reason="I'm a teapot", content_type="text/plain; charset=utf-8"
    )
    response["X-Extra"] = "1"
    response.set_cookie("a", "1", httponly=True)
    response.set_cookie("b", "2", samesite="Lax", max_age=60)
    d = response_to_dict(response)
    assert json.loads(json.dumps(d)) == d  # plain JSON
    assert d["status"] == 418 and d["reason"] == "I'm a teapot"
    assert ["X-Extra", "1"] in d["headers"]
    cookies = [v for k, v in d["headers"] if k == "Set-Cookie"]
    assert len(cookies) == 2 and cookies[0].startswith("a=1") and "HttpOnly" in cookies[0]
    assert d["body"] == "héllo" and d["body_encoding"] == "utf-8"
    back = dict_to_response(d)
    assert back.status_code == 418 and back.reason_phrase == "I'm a teapot"
    assert back.content == "héllo".encode()
    assert back["Content-Type"] == "text/plain; charset=utf-8"
    assert back.cookies["a"].value == "1"
    assert response_to_dict(back) == d


def test_unusual_set_cookie_lines_survive_verbatim() -> None:
    cookie_lines = ["c=1; Path=/; Secure; Partitioned", "c=2; Path=/other", "bad name=x"]
    d: dict[str, Any] = {
        "status": 200,
        "reason": "OK",
        "headers": [
            ["Set-Cookie", "c=1; Path=/; Secure; Partitioned"],
            ["Set-Cookie", "c=2; Path=/other"],
            ["Set-Cookie", "bad name=x"],
        ],
        "body": "",
        "body_encoding": "utf-8",
    }
    back = dict_to_response(d)
    # What the WSGI handler would send: one Set-Cookie per morsel.
    sent = [c.output(header="").strip() for c in back.cookies.values()]
    assert sent == cookie_lines
    assert "Content-Type" not in back.headers  # exactly the captured headers, no defaults
    assert response_to_dict(back) == d


@given(st.binary(max_size=500), st.integers(min_value=100, max_value=599))
def test_binary_bodies_and_statuses(body: bytes, status: int) -> None:
    d = response_to_dict(HttpResponse(body, status=status, content_type="application/octet-stream"))
    back = dict_to_response(json.loads(json.dumps(d)))
    assert back.content == body and back.status_code == status


def test_streaming_responses_are_consumed(tmp_path: Path) -> None:
    d = response_to_dict(StreamingHttpResponse(iter([b"a", b"\xff", b"c"]), status=206))
    assert d["status"] == 206 and d["body_encoding"] == "base64"
    assert dict_to_response(d).content == b"a\xffc"
    f = tmp_path / "f.bin"
    f.write_bytes(b"file-content")
    with f.open("rb") as fh:
        response = FileResponse(fh)
        d = response_to_dict(response)
        response.close()
    assert d["body"] == "file-content"
    assert dict_to_response(d)["Content-Length"] == str(len(b"file-content"))


def test_json_response() -> None:
    d = response_to_dict(JsonResponse({"ok": True}))
    back = dict_to_response(d)
    assert json.loads(back.content) == {"ok": True}
    assert back["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"status": "x", "headers": [], "body": ""},
        {"status": 200, "headers": [["a"]], "body": ""},
        {"status": 200, "headers": [], "body": "**", "body_encoding": "base64"},
    ],
)
def test_malformed_response_dict(bad: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError, match="malformed response"):
        dict_to_response(bad)


@pytest.mark.parametrize(
    ("host", "name", "port"),
    [("example.com:8080", "example.com", "8080"), ("[::1]:8000", "[::1]", "8000"), ("[::1]", "[::1]", "80")],
)
def test_host_header_drives_server_name_and_port(host: str, name: str, port: str) -> None:
    request = rebuild_request(
        Envelope(function="fn", kind="http", method="GET", path="/", headers=(("Host", host),))
    )
    assert request.get_host() == host
    assert (request.META["SERVER_NAME"], request.get_port()) == (name, port)


def test_body_length_and_type_come_from_fields_not_headers() -> None:
    envelope = Envelope(
        function="fn",
        kind="http",
        method="POST",
        path="/",
        headers=(("Content-Length", "999"), ("Content-Type", "text/evil")),
        body="abc",
        content_type="text/plain",
    )
    request = rebuild_request(envelope)
    assert request.META["CONTENT_LENGTH"] == "3" and request.body == b"abc"
    assert request.content_type == "text/plain"
    assert "HTTP_CONTENT_LENGTH" not in request.META and "HTTP_CONTENT_TYPE" not in request.META

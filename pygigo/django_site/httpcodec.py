"""Django ⇄ envelope: capture a request, rebuild it on a worker, carry the response back.

``capture_request`` turns an ``HttpRequest`` into an http :class:`Envelope`;
``rebuild_request`` turns it back into a real ``WSGIRequest`` built from a synthesized
WSGI environ, so Django's own code parses the query string, cookies, form and multipart
bodies exactly as it would on the web server — an existing view runs on a worker unchanged.
``response_to_dict`` / ``dict_to_response`` do the same for the answer.

Contract of the round trip ``rebuild_request(capture_request(r))``: same method, path,
path_info, ``GET`` (order and repeats), forwarded headers (``request.headers``), raw body,
``CONTENT_TYPE``, ``REMOTE_ADDR``, scheme and host; hence same ``POST`` and ``FILES``.
Not carried: the session, ``request.user`` (the worker derives it from ``principal``),
attributes set by middleware, and stripped secret / hop-by-hop headers.

Capture the request before anything reads ``request.POST``/``FILES`` of a multipart body:
Django then streams it and the raw bytes are gone.
"""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import Iterable, Mapping
from http.cookies import CookieError, Morsel
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.http.request import RawPostDataException

from pygigo.platform.envelope import Envelope, EnvelopeError, decode_body, encode_body, filter_headers

# META keys that are headers but lack the HTTP_ prefix (CGI heritage). They travel in
# dedicated fields (content_type, and the body's length), never in ``headers``.
_BODY_HEADERS = frozenset({"content-type", "content-length"})
# Headers a WSGI server merges with "; " rather than ", " when they repeat.
_SEMICOLON_JOINED = frozenset({"cookie"})


def _header_name(meta_key: str) -> str:
    """HTTP_X_FORWARDED_FOR -> X-Forwarded-For (the form ``request.headers`` uses)."""
    return "-".join(part.capitalize() for part in meta_key[5:].split("_"))


def _wsgi_str(text: str) -> str:
    """Unicode text -> the latin-1-decoded UTF-8 bytes PEP 3333 puts in the environ."""
    return text.encode("utf-8").decode("iso-8859-1")


def _json_route_kwargs(route_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    # Django's uuid path converter yields UUID objects; everything else it ships is
    # str/int. The worker re-resolves the path if it needs typed values back.
    out: dict[str, Any] = {}
    for key, value in (route_kwargs or {}).items():
        out[key] = str(value) if isinstance(value, uuid.UUID) else value
    return out


def _capture_query(request: HttpRequest) -> list[tuple[str, str]]:
    # request.GET groups values by key and so loses interleaving (a=1&b=2&a=3); parse the
    # raw query string instead, decoding it exactly the way QueryDict does.
    raw = request.META.get("QUERY_STRING", "")
    if not raw:
        return []  # most requests: no need to build request.GET for its encoding
    encoding = request.GET.encoding
    try:
        raw_bytes = raw.encode("iso-8859-1")
    except UnicodeEncodeError:  # a test or ASGI server that put real unicode there
        raw_bytes = raw.encode("utf-8")
    try:
        text = raw_bytes.decode(encoding)
    except UnicodeDecodeError:
        text = raw_bytes.decode("iso-8859-1")
    return parse_qsl(text, keep_blank_values=True, encoding=encoding)


def _capture_headers(request: HttpRequest) -> list[tuple[str, str]]:
    meta = request.META
    headers = [(_header_name(k), v) for k, v in meta.items() if k.startswith("HTTP_") and isinstance(v, str)]
    if "HTTP_HOST" not in meta and meta.get("SERVER_NAME"):
        # HTTP/1.0 clients and Django's RequestFactory send no Host; pin the server name
        # the web side saw, so request.get_host() agrees on the worker.
        host, port = str(meta["SERVER_NAME"]), str(meta.get("SERVER_PORT", ""))
        default_port = "443" if request.is_secure() else "80"
        headers.insert(0, ("Host", host if port in ("", default_port) else f"{host}:{port}"))
    return headers


def capture_request(
    request: HttpRequest,
    *,
    function: str,
    route_kwargs: Mapping[str, Any] | None = None,
    forward_secrets: bool = False,
    principal: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    deadline: float | None = None,
    trace_id: str | None = None,
    allow_headers: Iterable[str] | None = None,
) -> Envelope:
    """Build an http envelope from ``request`` for ``function``.

    Cookie/Authorization/Proxy-Authorization/X-Api-Key are dropped unless
    ``forward_secrets``; hop-by-hop headers always (see ``filter_headers``).
    Raises EnvelopeError if the body was already consumed as a stream (capture earlier),
    and lets Django's RequestDataTooBig propagate (the caller answers 413).
    """
    try:
        body = request.body
    except RawPostDataException:
        raise EnvelopeError(
            "the request body was already read as a stream (request.POST/FILES on a multipart "
            "request); capture the request before anything touches request.POST"
        ) from None
    text, body_encoding = encode_body(body)
    path_info = request.path_info or "/"
    # request.path = script_name (minus trailing /) + path_info, so the prefix is the rest.
    script_name = (
        request.path[: len(request.path) - len(path_info)] if request.path.endswith(path_info) else ""
    )
    extra: dict[str, Any] = {}
    if trace_id is not None:
        extra["trace_id"] = trace_id
    return Envelope(
        function=function,
        kind="http",
        method=(request.method or "GET").upper(),
        path=request.path or "/",
        script_name=script_name,
        scheme=request.scheme or "http",
        query=tuple(_capture_query(request)),
        headers=tuple(
            filter_headers(_capture_headers(request), forward_secrets=forward_secrets, allow=allow_headers)
        ),
        body=text,
        body_encoding=body_encoding,
        content_type=request.META.get("CONTENT_TYPE") or None,
        route_kwargs=_json_route_kwargs(route_kwargs),
        client_addr=request.META.get("REMOTE_ADDR") or None,
        principal=principal,
        idempotency_key=idempotency_key,
        deadline=deadline,
        **extra,
    )


def _build_environ(envelope: Envelope, body: bytes) -> dict[str, Any]:
    is_https = envelope.scheme == "https"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": envelope.method,
        "SCRIPT_NAME": _wsgi_str(envelope.script_name.rstrip("/")),
        "PATH_INFO": _wsgi_str(envelope.path_info),
        # Percent-encoded UTF-8 is what a browser sends and what QueryDict decodes.
        "QUERY_STRING": urlencode(list(envelope.query), quote_via=quote),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443" if is_https else "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": envelope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if body:  # like a bodiless GET, which carries no Content-Length at all
        environ["CONTENT_LENGTH"] = str(len(body))
    if envelope.content_type is not None:
        environ["CONTENT_TYPE"] = envelope.content_type
    if envelope.client_addr is not None:
        environ["REMOTE_ADDR"] = envelope.client_addr
    for name, value in envelope.headers:
        lower = name.lower()
        if lower in _BODY_HEADERS:
            continue  # the dedicated fields are authoritative
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:  # a repeated header: merge the way WSGI servers do
            sep = "; " if lower in _SEMICOLON_JOINED else ", "
            environ[key] = f"{environ[key]}{sep}{value}"
        else:
            environ[key] = value
    if "HTTP_HOST" in environ:
        # Keep SERVER_NAME/PORT consistent with Host (get_port() and fallbacks read them).
        # rpartition leaves "[::1]" alone because its tail "1]" is not a port number.
        name, sep, port = environ["HTTP_HOST"].rpartition(":")
        if sep and port.isdigit():
            environ["SERVER_NAME"], environ["SERVER_PORT"] = name, port
        else:
            environ["SERVER_NAME"] = environ["HTTP_HOST"]
    return environ


def rebuild_request(envelope: Envelope) -> HttpRequest:
    """A real ``WSGIRequest`` equivalent to the captured one (see the module contract).

    The envelope is attached as ``request.pygigo_envelope`` so a view or middleware can
    read the principal, deadline or trace id. Raises EnvelopeError for a call envelope and
    ClaimCheckError if the body is still offloaded (call ``restore_body`` first).
    """
    if envelope.kind != "http":
        raise EnvelopeError(f"cannot rebuild an HTTP request from a {envelope.kind!r} envelope")
    request = WSGIRequest(_build_environ(envelope, envelope.body_bytes()))
    request.pygigo_envelope = envelope  # type: ignore[attr-defined]
    return request


def _response_bytes(response: HttpResponseBase) -> bytes:
    if isinstance(response, StreamingHttpResponse):
        # Consumes the iterator. We do not call response.close(): it fires request_finished
        # (which closes DB connections mid-task); the caller, acting as the server, does.
        return b"".join(response.streaming_content)  # type: ignore[arg-type]
    if isinstance(response, HttpResponse):
        return response.content
    raise TypeError(f"cannot serialise {type(response).__name__}; expected an HttpResponse")


def response_to_dict(response: HttpResponseBase) -> dict[str, Any]:
    """``{"status", "reason", "headers": [[name, value], ...], "body", "body_encoding"}``.

    Headers include one ``Set-Cookie`` per cookie, as the WSGI handler would send them.
    Streaming responses are read to the end (see ``_response_bytes`` about closing).
    """
    body, body_encoding = encode_body(_response_bytes(response))
    headers = [[name, value] for name, value in response.items()]
    headers += [["Set-Cookie", morsel.OutputString()] for morsel in response.cookies.values()]
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "headers": headers,
        "body": body,
        "body_encoding": body_encoding,
    }


class _RawCookie(Morsel[str]):
    """A Set-Cookie line kept verbatim: re-parsing with SimpleCookie would drop attributes
    it does not know (e.g. Partitioned) or, on anything unusual, the whole cookie."""

    def __init__(self, raw: str) -> None:
        super().__init__()
        self.raw = raw
        name, _, value = raw.split(";", 1)[0].partition("=")
        try:
            self.set(name.strip(), value.strip(), value.strip())
        except CookieError:
            self.set("pygigo-unparsed-cookie", "", "")

    def OutputString(self, attrs: Any = None) -> str:
        return self.raw


def dict_to_response(data: Mapping[str, Any]) -> HttpResponse:
    """Inverse of :func:`response_to_dict`. Raises EnvelopeError on a malformed dict."""
    try:
        status, headers = int(data["status"]), data["headers"]
        content = decode_body(data["body"], data.get("body_encoding", "utf-8"))
        reason = data.get("reason")
        pairs = [(str(n), str(v)) for n, v in headers]
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"malformed response dict: {exc!r}") from None
    response = HttpResponse(content, status=status, reason=reason)
    # Start from exactly the captured headers, not HttpResponse's defaults.
    for name in list(response.headers):
        del response.headers[name]
    for index, (name, value) in enumerate(pairs):
        if name.lower() == "set-cookie":
            cookie = _RawCookie(value)
            key = cookie.key if cookie.key not in response.cookies else f"{cookie.key}#{index}"
            dict.__setitem__(response.cookies, key, cookie)
        else:
            response.headers[name] = value
    return response

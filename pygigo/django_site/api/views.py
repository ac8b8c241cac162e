"""The API's views. Contracts (status codes, bodies) are in the OpenAPI document
(:mod:`.openapi`); error codes in :mod:`.errors`.

* ``/fn/<name>`` (by the methods the function declares, default POST): capture, record,
  enqueue → ``202`` + ``Location``; with ``Prefer: wait=N`` the function's own response if it
  finished within N seconds.
* ``GET /fn``: the functions this caller may invoke.
* ``GET|DELETE /invocations/<id>``, ``GET /invocations/<id>/result``.

An invocation is visible to the principal who made it and to staff users holding the
``view_invocation`` permission (``change_invocation`` to cancel); to anyone else it does not
exist (404, so ids cannot be probed). Anonymous callers are not one principal: each anonymous
invocation is answered with a capability token (header :data:`TOKEN_HEADER`) that reads or
cancels it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from pygigo.adapters.base import MessageTooLarge
from pygigo.platform import metrics
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.envelope import SECRET_HEADERS, Envelope, FileClaimCheckStore, offload_body
from pygigo.platform.functions import BadArguments, Function
from pygigo.platform.registry import registry

from .. import store
from ..httpcodec import capture_request, dict_to_response
from ..models import Invocation, Status
from ..runner import claim_check_store
from . import waiting
from .auth import Caller, authenticate, caller_id, rate_limit, require_authenticated
from .errors import ApiError, api_view, method_not_allowed, too_large

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)
#: Also the OpenAPI document's pattern for the header.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
#: Deeper JSON is refused: no function needs it, and recursion on it fails far from here.
MAX_JSON_DEPTH = 64
READ_METHODS = ("GET", "HEAD")
TOKEN_HEADER = "Invocation-Token"


# The settings an accept reads are read once (see pygigo_settings.cached): per request they
# were a tenth of Pygigo's own work.
@pygigo_settings.cached
def max_body_bytes() -> int:
    return int(pygigo_settings.setting("PYGIGO_MAX_BODY_BYTES", 1024 * 1024))


@pygigo_settings.cached
def _max_wait_s() -> float:
    return float(pygigo_settings.setting("PYGIGO_MAX_WAIT_S", 30.0))


def prefer_wait_s(request: HttpRequest) -> float | None:
    """Seconds from ``Prefer: wait=N`` (RFC 7240), capped by ``PYGIGO_MAX_WAIT_S``."""
    match = _PREFER_WAIT.search(request.META.get("HTTP_PREFER", ""))
    if not match:
        return None
    return min(float(match.group(1)), _max_wait_s())


def read_body(request: HttpRequest) -> bytes:
    """The body, refused with 413 above ``PYGIGO_MAX_BODY_BYTES`` (checked on the declared
    length first, so an oversized upload is not read at all). A body without a length
    (chunked) is refused with 411: WSGI would read it as empty."""
    limit = max_body_bytes()
    declared_text = request.META.get("CONTENT_LENGTH") or ""
    if not declared_text and request.META.get("HTTP_TRANSFER_ENCODING"):
        raise ApiError(411, "length_required", "Send the body with a Content-Length, not chunked.")
    if declared_text and not (declared_text.isascii() and declared_text.isdigit()):
        raise ApiError(
            400, "invalid_header", f"Content-Length must be a number of bytes, not {declared_text[:40]!r}."
        )
    declared = int(declared_text or 0)
    if declared > limit:
        raise too_large(limit)
    body = request.body
    if len(body) > limit:
        raise too_large(limit)
    return body


def parse_json(body: bytes, hint: str) -> Any:
    """``body`` as strict JSON, or ApiError 400 ``malformed_json`` ending with ``hint``:
    no NaN or Infinity (nor numbers that overflow to it), no lone surrogates (they have no
    UTF-8 form), at most :data:`MAX_JSON_DEPTH` levels of nesting."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        problem = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, "malformed_json", f"The body is not valid JSON ({problem}); {hint}") from None
    unportable = _json_problem(value)
    if unportable:
        raise ApiError(400, "malformed_json", f"The body is not portable JSON ({unportable}); {hint}")
    return value


def _json_problem(value: Any) -> str | None:
    """What makes a parsed JSON value unusable, walked without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not JSON numbers"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone surrogate escape such as \\ud800"
        elif isinstance(item, dict):
            pending.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            pending.extend((part, depth + 1) for part in item)
    return None


def _check_json(request: HttpRequest, body: bytes) -> None:
    content_type = request.content_type or ""
    if body and (content_type == "application/json" or content_type.endswith("+json")):
        parse_json(body, "fix it or change Content-Type.")


def call_arguments(body: bytes) -> tuple[list[Any], dict[str, Any]]:
    """A plain function's arguments from a JSON body: an array is the positional arguments,
    an object the keyword arguments, an empty body none."""
    if not body.strip():
        return [], {}
    value = parse_json(body, "this function takes an array (positional) or an object (keyword).")
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    raise ApiError(
        400,
        "bad_arguments",
        "This function takes JSON arguments: send an array (positional) or an object (keyword), not a "
        f"{type(value).__name__}.",
    )


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")  # not request.headers: see auth._presented_key
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ApiError(
            400, "invalid_header", "Idempotency-Key must be 1-255 visible ASCII characters (a UUID is ideal)."
        )
    return key


def offload_large_body(envelope: Envelope) -> Envelope:
    """Bodies above ``PYGIGO_CLAIM_CHECK_THRESHOLD_BYTES`` (default 256 KiB) travel as a
    claim-check pointer when ``PYGIGO_CLAIM_CHECK_DIR`` is set (brokers such as SQS cap
    message size; Redis does not, but small messages keep the broker fast)."""
    claims, threshold = _claim_checks()
    if claims is None:
        return envelope
    return offload_body(envelope, claims, threshold)


@pygigo_settings.cached
def _claim_checks() -> tuple[FileClaimCheckStore | None, int]:
    threshold = int(pygigo_settings.setting("PYGIGO_CLAIM_CHECK_THRESHOLD_BYTES", 256 * 1024))
    return claim_check_store(), threshold


def forwarded_headers(function: Function[..., Any]) -> frozenset[str]:
    """The allow-list of request headers for ``function`` (credentials only if it opts in)."""
    allowed = pygigo_settings.forward_headers()
    return allowed | SECRET_HEADERS if function.options.forward_secrets else allowed


def may_invoke(caller: Caller, function: Function[..., Any]) -> bool:
    return function.over_http and (function.options.public or caller.authenticated)


def accept(
    request: HttpRequest, function: Function[..., Any], route_kwargs: Mapping[str, Any] | None = None
) -> HttpResponseBase:
    """The shared core of ``/fn/<name>`` and dispatched views: authenticate, check, record,
    enqueue, and answer 202 or (``Prefer: wait``) the function's response."""
    if request.method not in function.options.methods:
        raise method_not_allowed(request.method or "?", function.options.methods)
    body = read_body(request)  # before authenticate(): the CSRF check may parse the form
    caller = authenticate(request, invoking=True)
    if not may_invoke(caller, function):
        require_authenticated(caller)
    rate_limit(request, caller)
    key = _idempotency_key(request)
    if key is not None and not caller.authenticated:
        raise ApiError(
            400,
            "idempotency_key_needs_auth",
            "Idempotency-Key needs an authenticated caller (API key or session): anonymous callers "
            "cannot be told apart, so one could read another's result. Authenticate or drop the header.",
        )
    wait_s = prefer_wait_s(request)
    if function.is_view:
        _check_json(request, body)
        envelope = capture_request(
            request,
            function=function.name,
            route_kwargs=route_kwargs,
            forward_secrets=function.options.forward_secrets,
            allow_headers=forwarded_headers(function),
            principal=caller.principal,
            idempotency_key=key,
        )
        envelope = offload_large_body(envelope)
    else:
        args, kwargs = call_arguments(body)
        try:
            function.check_arguments(tuple(args), kwargs)
        except BadArguments as exc:
            raise ApiError(
                400, "bad_arguments", f"The arguments do not fit {exc}. Fix the JSON body."
            ) from None
        envelope = Envelope(
            function=function.name,
            kind="call",
            args=tuple(args),
            kwargs=kwargs,
            principal=caller.principal,
            idempotency_key=key,
        )
    token = None if caller.authenticated else secrets.token_urlsafe(32)
    try:
        invocation, created = store.submit(
            envelope, function, owner=store.anonymous_owner(token) if token else None
        )
    except MessageTooLarge as exc:
        raise ApiError(
            413,
            "message_too_large",
            f"{exc} Set PYGIGO_CLAIM_CHECK_DIR so large bodies travel by claim check.",
        ) from None
    if not created and invocation.function != function.name:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"This Idempotency-Key was already used for function {invocation.function!r}; use a new key.",
        )
    if wait_s:
        with waiting.wait_slot(caller_id(request, caller)) as may_wait:
            response = respond(invocation, wait_s if may_wait else None)
    else:
        response = _accepted(invocation)
    if token:
        response[TOKEN_HEADER] = token
    return response


def _accepted(invocation: Invocation) -> HttpResponse:
    document = invocation.as_json()
    # Not JsonResponse: its encoder class and charset look-ups were a third of the response's
    # cost, and the status document is plain JSON.
    return HttpResponse(
        json.dumps(document),
        content_type="application/json",
        status=202,
        headers={"Location": document["links"]["self"], "Retry-After": "1"},
    )


def respond(invocation: Invocation, wait_s: float | None) -> HttpResponseBase:
    """202 with the status document, or the result if finished within ``wait_s`` seconds."""
    if wait_s:
        done = store.wait_for(invocation.id, wait_s)
        finished = done if done is not None and done.finished else None
        if families := metrics.families():
            families.http_wait.labels("fell_back" if finished is None else "answered").inc()
        if finished is not None:
            response = result_response(finished)
            response["Preference-Applied"] = f"wait={wait_s:g}"
            return response
    return _accepted(invocation)


def result_response(invocation: Invocation) -> HttpResponseBase:
    """The function's own response (http), ``{"result": …}`` (call), or why there is none."""
    if invocation.status == Status.SUCCEEDED:
        if invocation.kind == "http" and isinstance(invocation.result, dict):
            return dict_to_response(invocation.result)
        return JsonResponse({"result": invocation.result})
    if invocation.status in (Status.FAILED, Status.DEAD):
        raise ApiError(
            502,
            "function_failed",
            f"The function failed ({invocation.status}); see 'error'. Fix the function or re-run it.",
            invocation=invocation.as_json(),
        )
    if invocation.status == Status.CANCELLED:
        raise ApiError(409, "no_result", "The invocation was cancelled; it has no result.")
    return _accepted(invocation)


def visible_invocation(request: HttpRequest, invocation_id: str) -> tuple[Invocation, Caller]:
    """The invocation if this caller may see it; otherwise ApiError 404 (never 403)."""
    caller = authenticate(request)
    rate_limit(request, caller)
    not_found = ApiError(
        404, "not_found", f"No invocation {invocation_id!r} that you can see. Check the id from Location."
    )
    try:
        parsed = uuid.UUID(invocation_id)
    except ValueError:
        raise not_found from None
    invocation = Invocation.objects.filter(id=parsed).first()
    permission = "view_invocation" if request.method in READ_METHODS else "change_invocation"
    if invocation is None or not (
        invocation.principal == _owner_key(request, caller) or caller.staff_may(permission)
    ):
        raise not_found
    return invocation, caller


def _owner_key(request: HttpRequest, caller: Caller) -> str | None:
    if caller.authenticated:
        return caller.key
    token = request.headers.get(TOKEN_HEADER)
    return store.anonymous_owner(token) if token else None


# -- the views ------------------------------------------------------------------------------


@csrf_exempt
# The accept commits its row itself, sharing one commit with the publish; under
# ATOMIC_REQUESTS it would wait for the request's commit, and `Prefer: wait` for ever.
@transaction.non_atomic_requests
@api_view
def invoke(request: HttpRequest, name: str) -> HttpResponseBase:
    function = registry.get(name)
    if function is None or not function.over_http:
        rate_limit(request, authenticate(request))  # guessing names counts too
        raise ApiError(
            404, "function_not_found", f"No function named {name!r}. GET /fn lists the ones you may invoke."
        )
    return accept(request, function)


@csrf_exempt
@api_view
def functions(request: HttpRequest) -> HttpResponseBase:
    if request.method not in READ_METHODS:
        raise method_not_allowed(request.method or "?", READ_METHODS)
    caller = authenticate(request)
    rate_limit(request, caller)
    listed = [
        {"name": fn.name, "queue": fn.queue, "public": fn.options.public, "url": f"/fn/{fn.name}"}
        for fn in sorted(registry, key=lambda fn: fn.name)
        if may_invoke(caller, fn)
    ]
    return JsonResponse({"functions": listed})


@csrf_exempt
@api_view
def invocation(request: HttpRequest, invocation_id: str) -> HttpResponseBase:
    if request.method not in (*READ_METHODS, "DELETE"):
        raise method_not_allowed(request.method or "?", (*READ_METHODS, "DELETE"))
    found, _ = visible_invocation(request, invocation_id)
    if request.method == "DELETE":
        if not store.cancel(found.id):
            found.refresh_from_db()
            raise ApiError(
                409,
                "not_cancellable",
                f"The invocation is {found.status}; only queued or retrying invocations can be cancelled.",
            )
        found.refresh_from_db()
    return JsonResponse(found.as_json())


@csrf_exempt
@api_view
def invocation_result(request: HttpRequest, invocation_id: str) -> HttpResponseBase:
    if request.method not in READ_METHODS:
        raise method_not_allowed(request.method or "?", READ_METHODS)
    found, _ = visible_invocation(request, invocation_id)
    return result_response(found)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: JSON for unknown URLs too."""
    return ApiError(404, "not_found", f"No such URL: {request.path}. See /openapi.json.").response()


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: the last line of defence against an HTML 500."""
    return ApiError(500, "internal_error", "Pygigo failed to handle this request; retry later.").response()

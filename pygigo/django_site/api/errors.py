"""JSON errors with a stable ``code`` and a ``detail`` saying what to fix.

Every API view is wrapped in :func:`api_view`: an :class:`ApiError` becomes its JSON
response, anything else a JSON 500 (logged with its traceback) — never Django's HTML page.

Codes: ``not_found``, ``function_not_found``, ``not_authenticated``, ``invalid_api_key``,
``csrf_failed``, ``malformed_json``, ``bad_arguments``, ``method_not_allowed``, ``payload_too_large``,
``rate_limited``, ``idempotency_key_reused``, ``invalid_header``, ``not_cancellable``,
``no_result``, ``function_failed``, ``internal_error``, ``metrics_disabled``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from pygigo.adapters.base import PygigoError
from pygigo.platform import metrics

logger = logging.getLogger("pygigo.api")

View = Callable[..., HttpResponseBase]


class ApiError(PygigoError):
    """An error answered as ``{"code": ..., "detail": ...}`` with ``status``."""

    def __init__(
        self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> JsonResponse:
        return error_response(self.status, self.code, self.detail, headers=self.headers, **self.extra)


def error_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail, **extra}, status=status, headers=headers)


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"The request body is larger than {limit} bytes. Send less, or upload the data elsewhere and "
        "pass a reference.",
    )


def method_not_allowed(method: str, allowed: Iterable[str]) -> ApiError:
    allowed = list(allowed)
    return ApiError(
        405,
        "method_not_allowed",
        f"{method} is not allowed here; use {', '.join(allowed)}.",
        headers={"Allow": ", ".join(allowed)},
    )


def api_view(view: View) -> View:
    """Turn ApiError and every unexpected exception into JSON responses; count each answer
    (when metrics are on) by route pattern, never the raw path, so labels stay bounded."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = _answer(view, request, *args, **kwargs)
        if families := metrics.families():
            match = request.resolver_match
            route = match.route if match is not None else "unmatched"
            families.http_requests.labels(route, request.method or "?", str(response.status_code)).inc()
        return response

    return wrapper


def _answer(view: View, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    try:
        return view(request, *args, **kwargs)
    except ApiError as exc:
        return exc.response()
    except RequestDataTooBig:
        from django.conf import settings

        return too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0).response()
    except Exception:
        logger.exception("Unhandled error in %s %s", request.method, request.path)
        return error_response(
            500,
            "internal_error",
            "Pygigo failed to handle this request; the error is logged on the server. Retry later.",
        )

"""Who is calling: an API key, a Django session, or nobody; CSRF and rate limits.

API keys come in ``Authorization: Bearer pgk_…`` or ``X-Api-Key: pgk_…``; a key that is
presented but unknown or revoked is an error (401), never a silent fall-back to anonymous.
Session-authenticated unsafe requests, and every request that invokes a function whatever
its method, must pass Django's CSRF check; API-key requests are not subject to CSRF (a browser
never attaches them by itself).

Rate limit: ``PYGIGO_RATE_LIMIT = "<requests>/<seconds>"`` per principal (per client address
for anonymous callers), a fixed window counted in the cache ``PYGIGO_RATE_LIMIT_CACHE`` (an
alias of ``CACHES``, default ``"default"``), which must be shared by every web process (a
per-process cache multiplies the limit by the number of processes; ``manage.py check`` warns).
Failed authentications and unknown functions count too, so guessing keys or names is limited.
Empty or None disables it.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from typing import Any

from django.core.cache import BaseCache, caches
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from pygigo.platform import settings as pygigo_settings

from ..models import ApiKey, Invocation
from ..store import principal_key
from .errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Only touch last_used_at this often: one extra write per request would double the cost.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Caller:
    """The authenticated (or anonymous) caller of one request."""

    user: Any = None
    api_key: ApiKey | None = None
    via: str = "anonymous"  # "session", "api_key" or "anonymous"

    @property
    def authenticated(self) -> bool:
        return self.via != "anonymous"

    @property
    def is_staff(self) -> bool:
        return bool(self.user is not None and self.user.is_staff)

    def staff_may(self, permission: str) -> bool:
        """Whether a staff caller holds ``permission`` on invocations (e.g. ``view_invocation``)."""
        return self.is_staff and bool(self.user.has_perm(f"{Invocation._meta.app_label}.{permission}"))

    @property
    def principal(self) -> dict[str, Any] | None:
        """The envelope's principal (None for anonymous callers)."""
        if not self.authenticated:
            return None
        return {
            "user_id": self.user.pk if self.user is not None else None,
            "api_key_id": self.api_key.pk if self.api_key is not None else None,
            "is_staff": self.is_staff,
        }

    @property
    def key(self) -> str:
        """The owner key stored on invocations (``user:<id>``, ``key:<id>``, ``anonymous``)."""
        return principal_key(self.principal)


def _presented_key(request: HttpRequest) -> str | None:
    # META rather than request.headers: building that mapping cost more than the lookups.
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.META.get("HTTP_X_API_KEY", "").strip()
    return value or None


def authenticate(request: HttpRequest, *, invoking: bool = False) -> Caller:
    """The caller of ``request``. Raises ApiError 401 for a bad key, 403 for a failed CSRF
    check (``invoking``: the request runs a function, so even a GET is checked). Read
    ``request.body`` before calling: the CSRF check may parse the form."""
    raw = _presented_key(request)
    if raw is not None:
        key = ApiKey.lookup(raw)
        if key is None:
            rate_limit(request, Caller())  # a guess counts against the client address
            raise ApiError(
                401,
                "invalid_api_key",
                "The API key is unknown or revoked. Create one with `manage.py pygigo_apikey create`.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return Caller(user=key.user, api_key=key, via="api_key")
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if invoking or request.method not in SAFE_METHODS:
            enforce_csrf(request)
        return Caller(user=user, via="session")
    return Caller()


def enforce_csrf(request: HttpRequest) -> None:
    """Django's CSRF check, run by hand: API views are csrf_exempt so that API-key calls and
    multipart bodies (which the middleware would stream away) pass untouched."""
    check = CsrfViewMiddleware(lambda r: None)  # type: ignore[arg-type]
    check.process_request(request)
    # Django accepts safe methods unchecked; a GET that invokes a function is not safe.
    method, request.method = request.method, "POST"
    try:
        refused = check.process_view(request, None, (), {}) is not None  # type: ignore[arg-type]
    finally:
        request.method = method
    if refused:
        raise ApiError(
            403,
            "csrf_failed",
            "CSRF check failed for this session-authenticated request. Send the csrftoken cookie's "
            "value in an X-CSRFToken header, or authenticate with an API key instead.",
        )


def require_authenticated(caller: Caller) -> None:
    if not caller.authenticated:
        raise ApiError(
            401,
            "not_authenticated",
            "This requires authentication: send 'Authorization: Bearer <api key>' or sign in.",
            headers={"WWW-Authenticate": "Bearer"},
        )


@pygigo_settings.cached
def _rate() -> tuple[int, int] | None:
    """``PYGIGO_RATE_LIMIT`` as (requests, window seconds); read once, like every setting a
    request reads (see ``pygigo_settings.cached``)."""
    spec = pygigo_settings.setting("PYGIGO_RATE_LIMIT")
    if not spec:
        return None
    count, _, window = str(spec).partition("/")
    return int(count), max(1, int(window or 1))


@pygigo_settings.cached
def rate_limit_cache_alias() -> str:
    return str(pygigo_settings.setting("PYGIGO_RATE_LIMIT_CACHE") or "default")


def caller_id(request: HttpRequest, caller: Caller) -> str:
    """Who to count a request against: the principal, or the client address if anonymous."""
    return caller.key if caller.authenticated else f"ip:{request.META.get('REMOTE_ADDR', '?')}"


def rate_limit(request: HttpRequest, caller: Caller) -> None:
    """Count this request in the caller's window; ApiError 429 with Retry-After when over."""
    rate = _rate()
    if rate is None:
        return
    limit, window = rate
    cache = caches[rate_limit_cache_alias()]
    who = caller_id(request, caller)
    now = time.time()
    slot = int(now // window)
    count = _count(cache, f"pygigo:rl:{who}:{window}:{slot}", window + 1)
    if count > limit:
        retry_after = max(1, int((slot + 1) * window - now + 0.999))
        raise ApiError(
            429,
            "rate_limited",
            f"Rate limit of {limit} requests per {window}s exceeded; retry in {retry_after}s.",
            headers={"Retry-After": str(retry_after)},
        )


def _count(cache: BaseCache, key: str, timeout: int) -> int:
    """Add one request to ``key``'s count: one cache operation, except for the first request
    of a window (incr refuses a missing key, add an existing one)."""
    try:
        return int(cache.incr(key))
    except ValueError:  # the window's first request
        if cache.add(key, 1, timeout=timeout):
            return 1
    try:
        return int(cache.incr(key))  # another process added it meanwhile
    except ValueError:  # and it expired since
        cache.set(key, 1, timeout=timeout)
        return 1

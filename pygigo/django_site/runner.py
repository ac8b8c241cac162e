"""Running an ``http`` envelope on a worker: a real ``HttpRequest`` in, a response dict out.

Installed into the platform by the app config (:func:`pygigo.platform.invocations.set_http_runner`).
The function receives the rebuilt request (``request.user`` derived from the envelope's
principal, ``request.pygigo_envelope`` the envelope) and the route kwargs, exactly like a
Django view; it may return an ``HttpResponse`` or any JSON value (sent as a JSON response).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponseBase, JsonResponse
from django.utils.functional import SimpleLazyObject

from pygigo.platform import settings as pygigo_settings
from pygigo.platform.envelope import Envelope, FileClaimCheckStore, restore_body
from pygigo.platform.functions import Function

from .httpcodec import rebuild_request, response_to_dict


def claim_check_store() -> FileClaimCheckStore | None:
    """The store named by ``PYGIGO_CLAIM_CHECK_DIR`` (a directory shared by web and workers)."""
    directory = pygigo_settings.setting("PYGIGO_CLAIM_CHECK_DIR")
    return FileClaimCheckStore(directory) if directory else None


def purge_claim_checks(older_than_s: float | None = None) -> int:
    """Maintenance hook: delete offloaded bodies older than any message that points at one
    may live (``PYGIGO_MESSAGE_TTL_S`` by default); returns how many."""
    store = claim_check_store()
    if store is None:
        return 0
    return store.purge(pygigo_settings.message_ttl_s() if older_than_s is None else older_than_s)


def _user(principal: Any) -> Any:
    user_id = (principal or {}).get("user_id")
    if user_id is None:
        return AnonymousUser()
    user = get_user_model().objects.filter(pk=user_id).first()
    return user if user is not None else AnonymousUser()


def run_http(function: Function[..., Any], envelope: Envelope) -> dict[str, Any]:
    """Run ``function`` as a view on the request ``envelope`` describes; the response as a dict."""
    if envelope.claim_check is not None:
        store = claim_check_store()
        if store is None:
            from pygigo.adapters.base import ConfigurationError

            raise ConfigurationError("envelope body was offloaded but PYGIGO_CLAIM_CHECK_DIR is not set here")
        envelope = restore_body(envelope, store)
    request = rebuild_request(envelope)
    principal = envelope.principal
    request.user = SimpleLazyObject(lambda: _user(principal))  # type: ignore[assignment]
    response = function.fn(request, **envelope.route_kwargs)
    if not isinstance(response, HttpResponseBase):
        response = JsonResponse(response, safe=False)
    return response_to_dict(response)

"""``@dispatched``: send an existing Django view to the workers.

::

    from pygigo.django_site.dispatch import dispatched

    @dispatched(queue="reports", public=False)
    def report(request, year):          # an ordinary view, unchanged
        return HttpResponse(build_report(year))

    urlpatterns = [path("reports/<int:year>", report)]

A request to the URL is captured (with its route kwargs), recorded and enqueued exactly like
``POST /fn/<name>``: ``202 Accepted`` + ``Location: /invocations/<id>``, or with
``Prefer: wait=N`` the view's own response if a worker finished it in time. On the worker
the original view runs with a rebuilt request. Workers must import the module that defines
the view (``pygigo worker myproject.views``) so the function is registered there too.

Options are ``@pygigo.function``'s; ``name`` defaults to ``<module>.<qualname>`` so views
with the same name in different apps do not collide.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from pygigo.platform.functions import Function, function

from .api.errors import ApiError, api_view
from .api.views import accept

ViewFn = Callable[..., Any]


def dispatched(view: ViewFn | None = None, /, *, name: str | None = None, **options: Any) -> Any:
    """Register ``view`` as a Pygigo function and return a view that dispatches it.

    The returned view has ``.function`` (the :class:`Function`) and ``.view`` (the original).
    CSRF is checked by Pygigo for session-authenticated unsafe requests (the view is
    csrf-exempt for Django's middleware, which would otherwise stream multipart bodies away
    before they can be captured).
    """

    def decorate(target: ViewFn) -> ViewFn:
        registered: Function[..., Any] = function(
            name=name or f"{target.__module__}.{target.__qualname__}", **options
        )(target)
        registered.is_view = True  # whatever its first parameter is called

        @csrf_exempt
        @api_view
        @functools.wraps(target)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if args:  # unnamed re_path groups: the worker passes route kwargs by name only
                raise ApiError(
                    500, "internal_error", "A dispatched view's URL pattern must use named parameters."
                )
            return accept(request, registered, kwargs)

        wrapper.function = registered  # type: ignore[attr-defined]
        wrapper.view = target  # type: ignore[attr-defined]
        return wrapper

    return decorate(view) if view is not None else decorate

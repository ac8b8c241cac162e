"""Pygigo's HTTP API: invoke functions, follow invocations, read results.

* :mod:`.errors` — :class:`ApiError`, JSON error responses, the never-HTML-500 wrapper;
* :mod:`.auth` — session or API-key principals, CSRF for sessions, rate limiting;
* :mod:`.views` — ``/fn``, ``/fn/<name>``, ``/invocations/<id>[/result]``;
* :mod:`.openapi` — the OpenAPI 3 document at ``/openapi.json``.
"""

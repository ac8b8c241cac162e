"""Stored results and group completion callbacks, configured by URL.

Dramatiq keeps an actor's return value only through its ``Results`` middleware, and runs a
group's completion callbacks only through ``GroupCallbacks``; both need a backend object, so
they cannot be named in ``PYGIGO_MIDDLEWARE`` (which instantiates classes without arguments).
Two settings build them instead:

``PYGIGO_RESULTS``
  the result backend: ``redis://[:password@]host[:port][/db]`` (also ``rediss://``) or
  ``memory://`` (this process only: tests, and web and worker in one process). Options:
  ``namespace`` (key prefix, default ``pygigo-results``) and ``ttl_s`` (how long a result is
  kept, default 600; a function may override it with ``result_ttl``).
``PYGIGO_GROUP_CALLBACKS``
  where a group counts its finished members, so the last one enqueues the completion
  callbacks (same schemes; default: ``PYGIGO_RESULTS``' URL). Option: ``ttl_s``, the longest
  a group may take (default one day).

Every process that sends to or runs such functions must point at the same store.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from django.utils.module_loading import import_string
from dramatiq.middleware import GroupCallbacks, Middleware
from dramatiq.results import Results

from ..adapters.base import BrokerURL, ConfigurationError, DriverMissing, Option, redact
from . import settings

_RESULT_BACKENDS = {
    "memory": "dramatiq.results.backends.stub.StubBackend",
    "redis": "dramatiq.results.backends.redis.RedisBackend",
    "rediss": "dramatiq.results.backends.redis.RedisBackend",
}
_BARRIER_BACKENDS = {
    "memory": "dramatiq.rate_limits.backends.stub.StubBackend",
    "redis": "dramatiq.rate_limits.backends.redis.RedisBackend",
    "rediss": "dramatiq.rate_limits.backends.redis.RedisBackend",
}


def _positive_float(value: str) -> float:
    parsed = float(value)
    if parsed <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return parsed


_RESULT_OPTIONS = {
    "namespace": Option(str, "pygigo-results", "prefix of the keys results are stored under"),
    "ttl_s": Option(_positive_float, 600.0, "seconds a result is kept"),
}
_BARRIER_OPTIONS = {"ttl_s": Option(_positive_float, 86400.0, "longest a group may take to finish (s)")}


def middleware() -> list[Middleware]:
    """``Results`` and ``GroupCallbacks`` as the settings configure them (none by default)."""
    built: list[Middleware] = []
    results_url = settings.results_url()
    if results_url:
        url = _parse("PYGIGO_RESULTS", results_url, _RESULT_OPTIONS)
        backend = _backend("PYGIGO_RESULTS", url, _RESULT_BACKENDS, namespace=url.options["namespace"])
        built.append(Results(backend=backend, result_ttl=int(url.options["ttl_s"] * 1000)))
    callbacks_url = settings.group_callbacks_url()
    if callbacks_url:
        url = _parse("PYGIGO_GROUP_CALLBACKS", callbacks_url, _BARRIER_OPTIONS)
        barriers = _backend("PYGIGO_GROUP_CALLBACKS", url, _BARRIER_BACKENDS)
        built.append(GroupCallbacks(barriers, barrier_ttl=int(url.options["ttl_s"] * 1000)))
    return built


def stores_results(broker: dramatiq.Broker) -> bool:
    """Whether ``broker`` keeps return values (its middleware includes ``Results``)."""
    return any(isinstance(m, Results) for m in broker.middleware)


def _parse(setting: str, url: str, options: dict[str, Option]) -> BrokerURL:
    try:
        return BrokerURL.parse(url, options)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{setting}: {exc}") from None


def _backend(setting: str, url: BrokerURL, backends: dict[str, str], **kwargs: Any) -> Any:
    path = backends.get(url.scheme)
    if path is None:
        raise ConfigurationError(
            f"{setting}={redact(url.raw)!r}: unknown scheme {url.scheme + '://'!r}. Use one of: "
            + ", ".join(f"{scheme}://" for scheme in backends)
            + "."
        )
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise DriverMissing(url.scheme, "redis", "redis") from exc
    if url.scheme != "memory":
        kwargs["url"] = url.without_query()
    return cls(**kwargs)

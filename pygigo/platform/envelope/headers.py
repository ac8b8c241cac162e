"""Which request headers may travel in an envelope.

Envelopes sit in brokers, dead-letter queues and logs for a long time, so only an
allow-list of headers travels (:data:`DEFAULT_FORWARD_HEADERS`, configurable as
``PYGIGO_FORWARD_HEADERS``), and credentials (:data:`SECRET_HEADERS`) only when a function
that really needs the caller's cookie or token opts in (``forward_secrets=True``). Hop-by-hop headers describe one TCP connection, not the
request, and are meaningless on a worker, so they are always dropped, together with any
header the ``Connection`` header names as hop-by-hop (RFC 9110 §7.6.1).
"""

from __future__ import annotations

from collections.abc import Iterable

SECRET_HEADERS = frozenset(
    {
        "cookie",
        "set-cookie",
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "x-csrftoken",
    }
)
#: What a function usually needs to act on a request: content negotiation, conditional and
#: range requests, the client's identity as proxies report it, tracing.
DEFAULT_FORWARD_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "content-language",
        "content-type",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "origin",
        "prefer",
        "range",
        "referer",
        "traceparent",
        "tracestate",
        "user-agent",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",
    }
)
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "trailer",
        "proxy-connection",
    }
)


def filter_headers(
    headers: Iterable[tuple[str, str]],
    *,
    forward_secrets: bool,
    allow: Iterable[str] | None = None,
) -> list[tuple[str, str]]:
    """Return the headers that may be forwarded, in their original order, repeats kept.

    Names compare case-insensitively. Hop-by-hop headers are always dropped; secrets
    (:data:`SECRET_HEADERS`) are dropped unless ``forward_secrets``. If ``allow`` is given,
    only headers named in it survive — it narrows, it never re-admits a secret (that takes
    ``forward_secrets``) or a hop-by-hop header.
    """
    pairs = list(headers)
    drop = set(HOP_BY_HOP_HEADERS)
    for name, value in pairs:
        if name.lower() == "connection":
            drop.update(token.strip().lower() for token in value.split(",") if token.strip())
    if not forward_secrets:
        drop |= SECRET_HEADERS
    allowed = None if allow is None else {a.lower() for a in allow}
    return [
        (name, value)
        for name, value in pairs
        if name.lower() not in drop and (allowed is None or name.lower() in allowed)
    ]

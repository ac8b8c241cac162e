"""Caps on ``Prefer: wait``: a waiting request holds a server thread (or a whole sync worker)
for up to ``PYGIGO_MAX_WAIT_S``, so a few callers could otherwise starve every other request,
``/healthz`` included.

Per web process, at most ``PYGIGO_MAX_CONCURRENT_WAITS`` requests wait at once, and at most
``PYGIGO_MAX_CONCURRENT_WAITS_PER_CALLER`` of them for one caller (principal, or client address
when anonymous). A request over either cap is not refused: RFC 7240 lets a server ignore a
preference, so it gets the ordinary ``202`` at once (without ``Preference-Applied``) and polls.
Keep the total below the server's threads per process (gunicorn ``--worker-class gthread
--threads N``, or an ASGI server) so some are always free for other requests.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from pygigo.platform import settings as pygigo_settings

DEFAULT_MAX_WAITS = 4
DEFAULT_MAX_WAITS_PER_CALLER = 2

_lock = threading.Lock()
_waiting: Counter[str] = Counter()


def _cap(name: str, default: int) -> int:
    return int(pygigo_settings.setting(name, default))


def in_progress() -> int:
    """How many requests of this process are waiting now."""
    with _lock:
        return sum(_waiting.values())


@contextmanager
def wait_slot(caller: str) -> Iterator[bool]:
    """Yields whether ``caller`` may wait now; the slot is held until the block ends."""
    with _lock:
        allowed = sum(_waiting.values()) < _cap(
            "PYGIGO_MAX_CONCURRENT_WAITS", DEFAULT_MAX_WAITS
        ) and _waiting[caller] < _cap("PYGIGO_MAX_CONCURRENT_WAITS_PER_CALLER", DEFAULT_MAX_WAITS_PER_CALLER)
        if allowed:
            _waiting[caller] += 1
    try:
        yield allowed
    finally:
        if allowed:
            with _lock:
                _waiting[caller] -= 1
                if not _waiting[caller]:
                    del _waiting[caller]

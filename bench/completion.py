"""The body of every benchmark no-op: count one completion in Redis (the same work for every system)."""

from __future__ import annotations

import os

import redis

_client: redis.Redis | None = None
_key = f"{os.environ.get('BENCH_QUEUE', 'bench')}:done"


def record() -> None:
    """INCR the run's completion counter; the client (and its pool) is created lazily, after any fork."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    _client.incr(_key)

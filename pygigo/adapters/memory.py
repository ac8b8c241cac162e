"""In-memory broker, for tests and for trying Pygigo in one process.

Features: delays, retries, dead letters (kept in memory), queue stats.
Not durable: messages live in this process only, so a worker in another process never sees
them and a crash loses them. No broker-level priority.

URL form: ``memory://`` (no host, no options).

Every instance has its own queues (Dramatiq's ``StubBroker`` keeps them per instance), so two
brokers in one process never share messages.
"""

from __future__ import annotations

from typing import Any, Self

from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.middleware import Middleware

from .base import BrokerURL, Capabilities, ConfigurationError, PygigoBroker, QueueStats


class MemoryBroker(PygigoBroker, StubBroker):
    scheme = "memory"
    capabilities = Capabilities(durable=False, redelivery="none")
    endpoint = "this process"

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        if url.netloc or url.path not in ("", "/"):
            raise ConfigurationError(f"memory:// takes no host or path; got {url.raw!r}. Use 'memory://'.")
        return cls(middleware=middleware, fail_fast_default=False)

    def ping(self) -> None:
        return None

    def queue_stats(self, queue_name: str) -> QueueStats:
        queues: dict[str, Any] = self.queues
        ready = queues[queue_name].qsize() if queue_name in queues else 0
        delayed = queues[dq_name(queue_name)].qsize() if dq_name(queue_name) in queues else 0
        return QueueStats(ready=ready, delayed=delayed, dead=len(self.dead_letters_by_queue.get(queue_name, [])))

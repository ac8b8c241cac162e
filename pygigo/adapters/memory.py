"""In-memory broker, for tests and for trying Pygigo in one process.

Features: delays, retries, dead letters (kept in memory), queue stats with the oldest ready
message's age (read from the head of the in-memory queue).
Not durable: messages live in this process only, so a worker in another process never sees
them and a crash loses them. No broker-level priority.

URL form: ``memory://`` (no host). Option: ``fail_fast`` (default true): ``join()`` re-raises
the first exception an actor raised, as Dramatiq's ``StubBroker`` does since 2.0, so tests
ported from it keep catching failures; ``memory://?fail_fast=false`` swallows them.

Every instance has its own queues (Dramatiq's ``StubBroker`` keeps them per instance), so two
brokers in one process never share messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker, _StubConsumer
from dramatiq.common import dq_name
from dramatiq.errors import QueueNotFound
from dramatiq.middleware import Middleware

from .base import (
    BrokerURL,
    Capabilities,
    ConfigurationError,
    Option,
    PygigoBroker,
    QueueStats,
    age_s,
    parse_bool,
)


class MemoryBroker(PygigoBroker, StubBroker):
    scheme = "memory"
    capabilities = Capabilities(durable=False)
    endpoint = "this process"
    url_options = {"fail_fast": Option(parse_bool, True, "join() re-raises an actor's exception")}

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        if url.netloc or url.path not in ("", "/"):
            raise ConfigurationError(
                f"memory:// takes no host or path; got {url.redacted!r}. Use 'memory://'."
            )
        return cls(middleware=middleware, fail_fast_default=url.options["fail_fast"])

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> _MemoryConsumer:
        try:
            queue = self.queues[queue_name]
        except KeyError:
            raise QueueNotFound(queue_name) from None
        return _MemoryConsumer(queue, self.dead_letters_by_queue[queue_name], prefetch, timeout)

    def flush(self, queue_name: str) -> None:
        # Dramatiq's stub flushes the ready queue only; delayed messages go too.
        for name in (queue_name, dq_name(queue_name)):
            if name in self.queues:
                super().flush(name)

    def ping(self) -> None:
        return None

    def queue_stats(self, queue_name: str) -> QueueStats:
        queues: dict[str, Any] = self.queues
        ready = queues[queue_name].qsize() if queue_name in queues else 0
        delayed = queues[dq_name(queue_name)].qsize() if dq_name(queue_name) in queues else 0
        return QueueStats(
            ready=ready,
            delayed=delayed,
            dead=len(self.dead_letters_by_queue.get(queue_name, [])),
            oldest_ready_age_s=age_s(self._head_timestamp(queues.get(queue_name))),
        )

    @staticmethod
    def _head_timestamp(queue: Any) -> int | None:
        if queue is None:
            return None
        with queue.mutex:  # queue.Queue keeps its items in a deque guarded by this lock
            head = queue.queue[0] if queue.queue else None
        return None if head is None else Message.decode(head).message_timestamp


class _MemoryConsumer(_StubConsumer):
    """Dramatiq's stub consumer drops what a stopping worker had prefetched; put it back."""

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        for message in messages:
            self.queue.put(message._message.encode())
            # The put counted a new task; the one we got is done, so joins stay balanced.
            self.queue.task_done()
            self.prefetch_semaphore.release()

"""Redis broker (Dramatiq's ``RedisBroker`` underneath).

Features: durable queues, delays (held by the worker until due), retries, dead letters
(kept ``dead_message_ttl_ms``), queue stats with the oldest ready message's age (the head
of the queue's list). Workers send heartbeats; the messages of a worker
that stops heart-beating are requeued (at-least-once). No broker-level priority: ``priority``
orders work only inside one worker's prefetch.

URL form: ``redis://[:password@]host[:port][/db][?option=value&...]`` (``rediss://`` for TLS).

Options:
  namespace             key prefix of every Redis key (default ``pygigo``)
  heartbeat_timeout_ms  silence after which a worker counts as dead and its messages are
                        requeued (default 60000)
  dead_message_ttl_ms   how long dead letters are kept (default 7 days)
  maintenance_chance    out of a million commands, how many also run maintenance (requeue of
                        dead workers' messages, dead-letter expiry); default 1000
  idle_poll_max_ms      longest a consumer sleeps between looks at its queue when it cannot
                        block on it: its prefetch is full, it is a delay queue, or the server
                        lacks BLMOVE (default 10)

An idle consumer does not poll: it blocks on its queue's list (``BLMOVE q q LEFT LEFT``, which
moves the head back onto itself, so the list and its order never change) until a message
arrives or the worker timeout passes, so a message sent to an idle worker starts at once.
Nothing is rung on enqueue: the list Dramatiq's enqueue pushes to is the doorbell.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Self
from uuid import uuid4

import dramatiq
import redis
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware

from .base import BrokerURL, Capabilities, Option, PygigoBroker, QueueStats, age_s

_WEEK_MS = 7 * 24 * 3600 * 1000


class RedisBroker(PygigoBroker, dramatiq_redis.RedisBroker):
    scheme = "redis"
    # Redis strings hold up to 512 MiB, far past any sane message (large bodies travel by
    # claim check), so no size check: it would cost an extra encode on every send.
    capabilities = Capabilities()
    url_options = {
        "namespace": Option(str, "pygigo", "prefix of every Redis key"),
        "heartbeat_timeout_ms": Option(int, 60_000, "ms of silence before a worker counts as dead"),
        "dead_message_ttl_ms": Option(int, _WEEK_MS, "ms dead letters are kept"),
        "maintenance_chance": Option(int, 1000, "commands per million that also run maintenance"),
        "idle_poll_max_ms": Option(int, 10, "longest idle sleep between looks at a queue (ms)"),
    }
    driver_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        broker = cls(
            url=url.without_query(),
            middleware=middleware,
            namespace=url.options["namespace"],
            heartbeat_timeout=url.options["heartbeat_timeout_ms"],
            dead_message_ttl=url.options["dead_message_ttl_ms"],
            maintenance_chance=url.options["maintenance_chance"],
        )
        broker.idle_poll_max_ms = max(1, url.options["idle_poll_max_ms"])
        broker.endpoint = f"{url.hostname or '127.0.0.1'}:{url.port or 6379}{url.path or '/0'}"
        return broker

    def ping(self) -> None:
        with self.translate_errors():
            self.client.ping()

    #: Caps the consumer's backoff when it cannot block on its queue (see the module doc).
    idle_poll_max_ms = 10

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _SweepingConsumer:
        return _SweepingConsumer(self, queue_name, prefetch, timeout)

    def _script_args(self, command: str, queue_name: str, *, maintenance: bool) -> list[Any]:
        # Same layout as RedisBroker._dispatch builds for dramatiq 2.x's dispatch.lua.
        return [
            command,
            current_millis(),
            queue_name,
            self.broker_id,
            self.heartbeat_timeout,
            self.dead_message_ttl,
            int(maintenance),
            self._max_unpack_size(),
        ]

    def sweep(self, queue_name: str) -> None:
        """Run Dramatiq's maintenance on ``queue_name`` now: requeue messages held by
        workers whose heartbeat expired, expire old dead letters."""
        with self.translate_errors():
            args = self._script_args("qsize", queue_name, maintenance=True)
            self.scripts["dispatch"](args=args, keys=[self.namespace])

    def enqueue_many(self, messages: Sequence[dramatiq.Message[Any]]) -> list[dramatiq.Message[Any]]:
        """Enqueue a batch in one pipelined round trip (one dispatch script call each)."""
        dispatch = self.scripts["dispatch"]
        pipe = self.client.pipeline(transaction=False)
        enqueued = []
        # All of it translated: building the arguments may talk to Redis too (its unpack limit).
        with self.translate_errors():
            for message in messages:
                # Like RedisBroker.enqueue: every enqueued copy needs its own id in Redis.
                message = message.copy(options={"redis_message_id": str(uuid4())})
                self.emit_before("enqueue", message, None)
                args = self._script_args("enqueue", message.queue_name, maintenance=False)
                dispatch(
                    args=[*args, message.options["redis_message_id"], message.encode()],
                    keys=[self.namespace],
                    client=pipe,
                )
                enqueued.append(message)
            pipe.execute()
        for message in enqueued:
            self.emit_after("enqueue", message, None)
        return enqueued

    def queue_stats(self, queue_name: str) -> QueueStats:
        prefix = f"{self.namespace}:"
        with self.translate_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(prefix + queue_name)
            pipe.llen(prefix + dq_name(queue_name))
            pipe.zcard(prefix + xq_name(queue_name))
            pipe.lindex(prefix + queue_name, 0)
            ready, delayed, dead, head_id = pipe.execute()
            # Dramatiq keeps a queue as a list of ids (oldest first) and the bodies in a hash.
            head = self.client.hget(f"{prefix}{queue_name}.msgs", head_id) if head_id else None
        # head is None also when a worker took the message between the two calls.
        sent_at = dramatiq.Message.decode(head).message_timestamp if head else None
        return QueueStats(ready=ready, delayed=delayed, dead=dead, oldest_ready_age_s=age_s(sent_at))


class _SweepingConsumer(dramatiq_redis._RedisConsumer):
    """Blocks on its queue while idle, and sweeps it at start and once per heartbeat timeout.

    Dramatiq requeues a dead worker's messages only during random maintenance (0.1% of
    commands by default), so on a quiet queue they could wait for hours; sweeping on a clock
    bounds that to about two heartbeat timeouts.
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        # Dramatiq's consumer sleeps up to ``timeout`` when it finds nothing; ours sleeps only
        # when it cannot block, and then briefly (idle_poll_max_ms).
        super().__init__(broker, queue_name, prefetch, min(timeout, broker.idle_poll_max_ms))
        self._sweep_every_s = broker.heartbeat_timeout / 1000
        self._next_sweep = 0.0
        self._block_s = timeout / 1000
        # A delay queue's consumer must come back on time to release messages that fell due
        # (Dramatiq does that between looks), so it keeps polling.
        self._blocks = q_name(queue_name) == queue_name
        self._key = f"{broker.namespace}:{queue_name}"

    def __next__(self) -> Any:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every_s
            self.broker.sweep(self.queue_name)
        room = self.prefetch - self.outstanding_message_count
        if self._blocks and room > 0 and not self.message_cache:
            try:
                self.message_cache = self.broker.do_fetch(self.queue_name, room)
                if not self.message_cache:
                    self._block_until_queued()
            except redis.ConnectionError as exc:
                raise ConnectionClosed(exc) from None
        # Hands out what was fetched, or fetches again after the wake-up (sleeping briefly if
        # another consumer took the message first).
        return super().__next__()

    def _block_until_queued(self) -> None:
        """Until the queue has a message, or the worker timeout (then Dramatiq's loop runs:
        shutdown checks). The fetch just found the list empty, so this cannot spin."""
        try:
            self.broker.client.blmove(self._key, self._key, self._block_s, "LEFT", "LEFT")
        except redis.TimeoutError:
            pass  # a client socket_timeout shorter than the block: just look again
        except redis.ResponseError as exc:  # Redis < 6.2 has no BLMOVE
            self._blocks = False
            self.logger.warning("Cannot block on %s (%s); polling it instead.", self._key, exc)

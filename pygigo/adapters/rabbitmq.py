"""RabbitMQ broker over pika (Dramatiq's ``RabbitmqBroker`` underneath).

Features: durable queues and persistent messages; publisher confirms on by default (``send``
returns only once RabbitMQ has the message); broker-level priority (queues are declared with
``x-max-priority``); native dead-lettering (each queue ``q`` dead-letters to ``q.XQ``);
delays (a ``q.DQ`` queue, held by the worker until due); a worker's unacknowledged messages
are redelivered when its connection closes (at-least-once). A publish that finds its
connection closed (RabbitMQ restarted, or an idle connection dropped by the server) reconnects
and retries before giving up with ``BrokerUnavailable``.

Queue stats: counts from ``queue.declare(passive)``. AMQP tells no message's age, so the
oldest ready age is read by peeking at the queue's head (``basic.get`` then ``basic.nack``
with requeue, on a channel of its own): the message goes back to its place, marked
redelivered. With priorities on, the head is the oldest message of the highest waiting
priority, not always the oldest of all.

URL form: ``amqp://user:password@host[:port]/vhost[?option=value&...]`` (vhost ``/`` is
``%2F``; ``amqps://`` for TLS).

Options:
  confirm                     publisher confirms (default true)
  max_priority                highest priority, 1-255; 0 turns priority queues off (default 10).
                              A queue's priority setting is fixed when it is first declared.
  heartbeat                   AMQP heartbeat in seconds (pika's; default the server's)
  connection_attempts         connection attempts before giving up (default 1)
  blocked_connection_timeout  seconds a connection blocked by the server may wait (default none)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Self
from urllib.parse import urlencode

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers import rabbitmq as dramatiq_rabbitmq
from dramatiq.middleware import Middleware

from .base import BrokerURL, Capabilities, Option, PygigoBroker, QueueStats, age_s, parse_bool

_PIKA_OPTIONS = ("heartbeat", "connection_attempts", "blocked_connection_timeout")


def _priority(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 255:
        raise ValueError("must be between 0 (off) and 255")
    return number


class RabbitmqBroker(PygigoBroker, dramatiq_rabbitmq.RabbitmqBroker):
    scheme = "amqp"
    # RabbitMQ 4's default max_message_size is 16 MiB.
    capabilities = Capabilities(max_message_bytes=16 * 1024 * 1024, supports_priority=True)
    url_options = {
        "confirm": Option(parse_bool, True, "wait for publisher confirms (true/false)"),
        "max_priority": Option(_priority, 10, "highest message priority, 0 turns it off"),
        "heartbeat": Option(int, None, "AMQP heartbeat in seconds"),
        "connection_attempts": Option(int, None, "connection attempts"),
        "blocked_connection_timeout": Option(float, None, "seconds a blocked connection may wait"),
    }
    driver_errors = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)

    @classmethod
    def _from_url(cls, url: BrokerURL, *, middleware: list[Middleware] | None) -> Self:
        pika_query = {k: url.options[k] for k in _PIKA_OPTIONS if url.options[k] is not None}
        driver_url = url.without_query() + (f"?{urlencode(pika_query)}" if pika_query else "")
        max_priority = url.options["max_priority"] or None
        broker = cls(
            url=driver_url,
            middleware=middleware,
            confirm_delivery=url.options["confirm"],
            max_priority=max_priority,
        )
        if max_priority is None:
            broker.capabilities = dataclasses.replace(cls.capabilities, supports_priority=False)
        broker.endpoint = f"{url.hostname or '127.0.0.1'}:{url.port or 5672}"
        return broker

    def enqueue_many(self, messages: Sequence[dramatiq.Message[Any]]) -> list[dramatiq.Message[Any]]:
        """Publish a batch in one AMQP transaction: one round trip to the broker's commit
        instead of one confirm per message, with the same guarantee (when ``tx_commit``
        returns, RabbitMQ has every message; a failure rolls the batch back). A connection
        the server closed is replaced and the batch sent again, as ``enqueue`` does."""
        if not messages:
            return []
        for message in messages:
            self.check_size(message)
        with self.translate_errors():
            for attempt in range(1, dramatiq_rabbitmq.MAX_ENQUEUE_ATTEMPTS + 1):
                try:
                    self._publish_batch(messages)
                    break
                except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
                    del self.connection  # the next attempt opens a new one
                    if attempt == dramatiq_rabbitmq.MAX_ENQUEUE_ATTEMPTS:
                        raise
        for message in messages:
            self.emit_after("enqueue", message, None)
        return list(messages)

    def _publish_batch(self, messages: Sequence[dramatiq.Message[Any]]) -> None:
        for queue_name in {message.queue_name for message in messages}:
            self.declare_queue(queue_name, ensure=True)
        channel = self.connection.channel()
        try:
            channel.tx_select()
            for message in messages:
                self.emit_before("enqueue", message, None)
                channel.basic_publish(
                    exchange="",
                    routing_key=message.queue_name,
                    body=message.encode(),
                    properties=pika.BasicProperties(
                        delivery_mode=2, priority=message.options.get("broker_priority")
                    ),
                )
            channel.tx_commit()
        finally:
            if channel.is_open:
                channel.close()

    def ping(self) -> None:
        with self.translate_errors():
            if not self.connection.is_open:
                raise pika.exceptions.AMQPConnectionError("connection is closed")

    def queue_stats(self, queue_name: str) -> QueueStats:
        with self.translate_errors():
            self.declare_queue(queue_name, ensure=True)
            ready, delayed, dead = self.get_queue_message_counts(queue_name)
            sent_at = self._peek_timestamp(queue_name) if ready else None
        return QueueStats(ready=ready, delayed=delayed, dead=dead, oldest_ready_age_s=age_s(sent_at))

    def _peek_timestamp(self, queue_name: str) -> int | None:
        """The send time of the message at the head of ``queue_name``, put straight back."""
        channel = self.connection.channel()
        try:
            method, _properties, body = channel.basic_get(queue_name, auto_ack=False)
            if method is None:  # a consumer took it since the count
                return None
            channel.basic_nack(method.delivery_tag, requeue=True)
            return dramatiq.Message.decode(body).message_timestamp
        finally:
            if channel.is_open:
                channel.close()

    def delete_queue(self, queue_name: str) -> None:
        """Delete ``queue_name`` with its delay and dead-letter queues (tests, tear-down)."""
        with self.translate_errors():
            for name in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ"):
                self.channel.queue_delete(name)
        self.queues.discard(queue_name)

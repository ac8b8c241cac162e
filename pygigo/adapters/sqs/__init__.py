"""Amazon SQS broker, on boto3's client API (not dramatiq-sqs).

Features:
  * durable standard queues; at-least-once delivery (a worker that dies loses nothing: SQS
    delivers its messages again when their visibility timeout lapses);
  * delays of any length: SQS's DelaySeconds (15 min at most, whole seconds, rounded up) on the
    same queue, and longer delays re-delayed in hops until the message's ``eta`` — so a retry
    whose backoff exceeds 15 minutes is never lost. No ``.DQ`` queue exists or is consumed;
  * dead letters: every queue ``q`` gets ``q-dlq`` and a RedrivePolicy (``max_receive_count``)
    when the adapter creates it, so a poison message that keeps killing workers ends there; a
    message that fails for good (retries exhausted, unknown function) is moved there at once;
  * visibility heartbeat: messages in hand are renewed every ``visibility_timeout_s / 3``,
    so a function may run longer than the visibility timeout (up to SQS's 12 hours);
  * graceful stop: prefetched messages get visibility 0 and go straight back;
  * batching: ``enqueue_many`` uses SendMessageBatch; acks use DeleteMessageBatch, flushed
    within ~10 ms; heartbeats use ChangeMessageVisibilityBatch;
  * a message over 1 MiB (SQS's limit since 2025; queues this adapter creates ask for it, older
    queues may still cap at 256 KiB) is refused with MessageTooLarge before anything is sent;
  * a Lambda entry point for SQS event batches (:mod:`.lambda_events`, wrapped by
    :mod:`pygigo.platform.lambda_handler`) reporting partial batch failures.
  No broker-level priority; FIFO queues are not used.

URL form: ``sqs://[?option=value&...]`` (no host, no credentials: boto3's standard chain —
environment, profile, instance/task/Lambda role — supplies them).

Options:
  region                AWS region (default: the chain's, e.g. AWS_REGION)
  endpoint_url          endpoint for emulators, e.g. http://127.0.0.1:5000 (moto, ElasticMQ)
  prefix                prepended to every SQS queue name (environments sharing an account)
  visibility_timeout_s  seconds a received message stays hidden; renewed while it runs
                        (default 30, 2-43200). A dead worker's messages return after this long.
  wait_time_s           long-poll wait of each ReceiveMessage, 0-20 (default 1). Longer is
                        cheaper when idle; a stopping worker may wait this long for its consumer.
  max_receive_count     receives before SQS moves a message to its dead-letter queue (default 5)
  create_queues         create missing queues and DLQs (default true). Set false where the
                        infrastructure owns them (infra/aws/template.yaml): the adapter then
                        needs no sqs:CreateQueue permission and a missing queue is QueueMissing.

Queue names: ``prefix + queue`` with '.' spelled '_' (SQS allows letters, digits, '-', '_';
76 characters at most, leaving room for ``-dlq``). Existing queues are used as they are.

Threading: one boto3 client per broker, created lazily under a lock (creating clients
concurrently is not thread-safe; using one is) and shared by every thread of the process.
Build one broker per process: never share it across ``fork``.
"""

from __future__ import annotations

from .broker import SQSBroker
from .core import MAX_MESSAGE_BYTES, MAX_NATIVE_DELAY_S

__all__ = ["MAX_MESSAGE_BYTES", "MAX_NATIVE_DELAY_S", "SQSBroker"]

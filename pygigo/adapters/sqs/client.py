"""boto3 plumbing for the SQS adapter: the client factory, queue naming, error translation.

Kept apart from the broker so the broker reads as Dramatiq semantics, and so the Lambda path
and the consumer share one definition of "what does this botocore error mean".
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from ..base import BrokerError, BrokerUnavailable, ConfigurationError, PygigoError, QueueMissing

T = TypeVar("T")

#: SQS hard limits the adapter plans around.
MAX_BATCH = 10  # entries per Send/Delete/ChangeMessageVisibility batch, messages per receive
MAX_QUEUE_NAME = 80
MAX_VISIBILITY_S = 43_200  # 12 h: a message cannot be held (extended) longer than this
DLQ_SUFFIX = "-dlq"
DLQ_RETENTION_S = 14 * 24 * 3600  # the maximum: dead letters are kept for people to inspect

_NAME_OK = re.compile(r"^[A-Za-z0-9_-]+$")

#: Error codes meaning "that queue does not exist" (query protocol and JSON protocol spellings).
QUEUE_MISSING_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
#: Error codes meaning "your credentials were refused": reported as unavailable, with the hint.
AUTH_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
    }
)
#: Transport-level failures: the endpoint could not be talked to at all.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
)


def sqs_queue_name(prefix: str, queue_name: str) -> str:
    """The SQS name of a Dramatiq queue: ``prefix + name``, with '.' (legal in Pygigo queue names,
    not in SQS) spelled '_'. Raises ConfigurationError if SQS would refuse the name."""
    name = prefix + queue_name.replace(".", "_")
    if not _NAME_OK.match(name) or len(name) + len(DLQ_SUFFIX) > MAX_QUEUE_NAME:
        raise ConfigurationError(
            f"SQS queue name {name!r} (prefix {prefix!r} + queue {queue_name!r}) is not valid: SQS allows "
            f"letters, digits, '-' and '_', at most {MAX_QUEUE_NAME - len(DLQ_SUFFIX)} characters "
            f"(the dead-letter queue adds {DLQ_SUFFIX!r}). Shorten the prefix or the queue name."
        )
    return name


def make_client(*, region: str | None, endpoint_url: str | None, read_timeout_s: float) -> Any:
    """A new SQS client with its own boto3 Session.

    Creating clients is not thread-safe (the default Session's shared state races), so callers
    build one under a lock; *using* a botocore client from several threads is safe, which is
    why the broker shares the one client it builds. Credentials come from the standard AWS chain
    (environment, shared files, instance/task/Lambda role).
    """
    config = botocore.config.Config(
        # "standard" mode retries throttling and 5xx with jittered backoff; three attempts keep
        # an unreachable endpoint from stalling a ping for long.
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        # A long poll holds the connection for wait_time_s; the read timeout must outlast it.
        read_timeout=read_timeout_s,
        # One pool slot per worker thread plus the consumer and keeper threads.
        max_pool_connections=64,
    )
    session = boto3.session.Session(region_name=region)
    try:
        return session.client("sqs", endpoint_url=endpoint_url, config=config)
    except botocore.exceptions.NoRegionError:
        raise ConfigurationError(
            "No AWS region for the sqs:// broker. Add ?region=eu-west-1 (for example) to "
            "PYGIGO_BROKER_URL, or set AWS_REGION / AWS_DEFAULT_REGION."
        ) from None


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, *, endpoint: str, queue: str | None = None) -> PygigoError:
    """The Pygigo error for a botocore exception (see the tree in :mod:`pygigo.adapters.errors`)."""
    if isinstance(exc, PygigoError):
        return exc
    where = f"the sqs:// broker at {endpoint}"
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        if code in QUEUE_MISSING_CODES:
            return QueueMissing(
                f"SQS queue {queue or '?'!r} does not exist at {endpoint}. Create it (infra/aws/template.yaml "
                f"does), or allow the adapter to create queues (?create_queues=true)."
            )
        if code in AUTH_CODES:
            return BrokerUnavailable(
                f"{where} refused the credentials ({code}: {exc}). Check the AWS credential chain "
                f"(AWS_PROFILE, AWS_ACCESS_KEY_ID, the role) and its IAM policy."
            )
        return BrokerError(f"{where} answered {code or 'an error'}: {exc}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return ConfigurationError(
            f"No usable AWS credentials for {where} ({exc}). Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            f"AWS_PROFILE, or run with an IAM role."
        )
    if isinstance(exc, CONNECTION_ERRORS):
        return BrokerUnavailable(
            f"Cannot reach {where} ({type(exc).__name__}: {exc}). Is the endpoint right and reachable? "
            f"Check PYGIGO_BROKER_URL (endpoint_url, region)."
        )
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return BrokerError(f"{where}: {type(exc).__name__}: {exc}")
    raise TypeError(f"not a driver error: {exc!r}")


DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
)


def chunks(items: Iterable[T], size: int = MAX_BATCH) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class LazyClient:
    """One client per broker, built on first use under a lock (see :func:`make_client`)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                client = self._client
        return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

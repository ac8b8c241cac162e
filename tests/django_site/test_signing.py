"""Every message signed, every message checked (issue 11, items 1-3).

Forged messages are written straight into the memory broker's queues, as someone with write
access to a broker would: they never pass through a Pygigo producer.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import pytest
from django.core import checks
from django.test import override_settings
from django.utils import timezone

from pygigo.adapters.base import ConfigurationError, PygigoBroker
from pygigo.django_site import store
from pygigo.django_site.models import Invocation, Status
from pygigo.platform import guard, invocations
from pygigo.platform import settings as pygigo_settings
from pygigo.platform.envelope import Envelope
from tests.conftest import wait_until

from . import functions


def _write_raw(broker: PygigoBroker, message: dramatiq.Message[Any]) -> None:
    """Put ``message`` on its queue as it is, bypassing every producer-side hook."""
    functions.fe_count.actor  # noqa: B018 - declares the queue (and its delay queue)
    broker.queues[message.queue_name].put(message.encode())  # type: ignore[attr-defined]


def _plain(arg: str, **options: Any) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=functions.QUEUE, actor_name="fe_count", args=(arg,), kwargs={}, options=options
    )


def _signed(arg: str) -> dramatiq.Message[Any]:
    message = _plain(arg)
    guard.sign(message)
    return message


def _tampered_args() -> dramatiq.Message[Any]:
    return _signed("genuine").copy(args=("evil",))


def _tampered_option() -> dramatiq.Message[Any]:
    message = _signed("evil")
    message.options["time_limit"] = 1
    return message


def _unknown_key() -> dramatiq.Message[Any]:
    with override_settings(PYGIGO_SIGNING_KEYS=["an-attackers-own-key"]):
        return _signed("evil")


def _runs_after(broker: PygigoBroker) -> None:
    """The worker stays healthy: a genuine message sent afterwards runs."""
    functions.fe_count.send("after")
    wait_until(lambda: "after" in functions.calls)


@pytest.mark.parametrize(
    "build",
    [
        lambda: _plain("evil"),
        lambda: _plain("evil", on_success="fe_count"),
        _tampered_args,
        _tampered_option,
        _unknown_key,
    ],
    ids=["unsigned", "unsigned-with-callback", "tampered-args", "tampered-option", "unknown-key"],
)
def test_forged_plain_messages_are_dead_lettered_never_run(
    broker: PygigoBroker, worker: dramatiq.Worker, build: Any
) -> None:
    _write_raw(broker, build())
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1)
    _runs_after(broker)
    worker.join()
    assert "evil" not in functions.calls and "genuine" not in functions.calls
    assert broker.queue_stats(functions.QUEUE).dead == 1  # no callback ran or was refused either


def test_unsigned_message_in_the_delay_queue_is_not_signed_on_its_way_out(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    message = _plain("evil", eta=int(time.time() * 1000)).copy(queue_name=f"{functions.QUEUE}.DQ")
    _write_raw(broker, message)
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1)
    _runs_after(broker)
    assert "evil" not in functions.calls


def test_expired_message_is_refused(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    with override_settings(PYGIGO_MESSAGE_TTL_S=-1):
        _write_raw(broker, _signed("stale"))
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1)
    assert "stale" not in functions.calls


def test_sends_delays_batches_and_retries_are_signed_and_run(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    functions.fe_count.send("sent")
    functions.fe_count.send_with_options(args=("delayed",), delay_s=0.05)
    functions.fe_count.send_many([("batch",), {"key": "kwargs"}])
    wait_until(lambda: {"sent", "delayed", "batch", "kwargs"} <= set(functions.calls))
    assert broker.queue_stats(functions.QUEUE).dead == 0


@override_settings(PYGIGO_UNSIGNED_QUEUES=[functions.QUEUE])
def test_plain_messages_run_on_queues_that_allow_them(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    _write_raw(broker, _plain("legacy"))
    wait_until(lambda: "legacy" in functions.calls)
    _write_raw(broker, _tampered_args())  # a wrong signature is still refused
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1)
    assert "evil" not in functions.calls


def test_replay_of_a_pruned_invocation_is_refused(broker: PygigoBroker, worker: dramatiq.Worker) -> None:
    envelope = Envelope(function="fe_count", kind="call", args=("once",))
    invocation, _ = store.submit(envelope, functions.fe_count)
    done = store.wait_for(invocation.id, 10)
    assert done is not None and done.status == Status.SUCCEEDED
    Invocation.objects.filter(id=invocation.id).delete()  # pruned
    replay = invocations.envelope_message(envelope, functions.fe_count)
    guard.sign(replay)  # even a validly signed copy (taken off the wire) does not run again
    _write_raw(broker, replay)
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1)
    assert functions.calls.count("once") == 1


def test_replay_with_a_short_time_limit_cannot_take_over_a_running_invocation(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    envelope = Envelope(function="fe_count", kind="call", args=("running",))
    invocation, _ = store.submit(envelope, functions.fe_count)
    wait_until(lambda: "running" in functions.calls)
    Invocation.objects.filter(id=invocation.id).update(status=Status.RUNNING, started_at=timezone.now())
    replay = invocations.envelope_message(envelope, functions.fe_count)
    guard.sign(replay)
    replay.options["time_limit"] = 1
    _write_raw(broker, replay)
    wait_until(lambda: broker.queue_stats(functions.QUEUE).dead == 1)
    assert functions.calls.count("running") == 1


@override_settings(DEBUG=False, SECRET_KEY=pygigo_settings.DEV_SECRET_KEY, PYGIGO_SIGNING_KEYS=None)
def test_the_public_default_key_is_refused_outside_debug() -> None:
    with pytest.raises(ConfigurationError, match="public development default"):
        pygigo_settings.signing_keys()
    errors = checks.run_checks(tags=[checks.Tags.security])
    assert "pygigo.E003" in [error.id for error in errors]
    with override_settings(DEBUG=True):
        assert pygigo_settings.signing_keys()


def test_a_dead_letter_the_worker_verified_still_verifies(
    broker: PygigoBroker, worker: dramatiq.Worker
) -> None:
    """Retries changes a message it gives up on (its retry count, the traceback): the worker
    signs it again, so the dead letter can be requeued (db:// admin) and is not taken for a
    forgery."""
    functions.fe_flaky.send("dead-letter")
    dead = broker.dead_letters_by_queue[functions.QUEUE]  # type: ignore[attr-defined]
    wait_until(lambda: len(dead) == 1, what="the message to be dead-lettered")
    worker.join()
    letter = dead[0]
    assert letter.options["retries"] == 3 and "traceback" in letter.options
    guard.check(letter)

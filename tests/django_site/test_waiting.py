"""`Prefer: wait` caps: a waiting request holds a server thread, so a caller over the per-caller
cap, or anyone once the process-wide cap is reached, gets the ordinary 202 at once."""

from __future__ import annotations

import threading
from typing import Any

from django.test import Client, override_settings

from pygigo.adapters.base import PygigoBroker
from pygigo.django_site.api import waiting
from pygigo.django_site.models import ApiKey, Invocation, Status
from tests.conftest import wait_until

from .test_api import _user

WAIT = {"Prefer": "wait=30"}


@override_settings(PYGIGO_MAX_CONCURRENT_WAITS=2, PYGIGO_MAX_CONCURRENT_WAITS_PER_CALLER=1)
def test_waits_over_the_caps_are_answered_202_at_once(broker: PygigoBroker) -> None:
    # No worker runs: every invocation stays queued, so a granted wait lasts until released.
    def client() -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {ApiKey.generate('w', _user('waiter'))[1]}")

    alice, bob, carol = client(), client(), client()
    answers: dict[str, Any] = {}

    def wait_as(name: str, who: Client) -> None:
        answers[name] = who.post("/fn/fe_echo", headers=WAIT)

    held = [threading.Thread(target=wait_as, args=(n, c)) for n, c in (("alice", alice), ("bob", bob))]
    for thread in held:
        thread.start()
    try:
        wait_until(lambda: waiting.in_progress() == 2, what="two requests to hold wait slots")
        again = alice.post("/fn/fe_echo", headers=WAIT)  # over alice's own cap
        assert again.status_code == 202 and "Preference-Applied" not in again
        third = carol.post("/fn/fe_echo", headers=WAIT)  # over the process-wide cap
        assert third.status_code == 202 and "Preference-Applied" not in third
        # Answered while alice and bob still wait: the capped requests did not wait themselves
        # (a wait of theirs would have outlasted alice's, which began earlier with the same N).
        assert all(thread.is_alive() for thread in held) and waiting.in_progress() == 2
    finally:
        # Finish what alice and bob wait for, so their requests return.
        Invocation.objects.filter(function="fe_echo", status=Status.QUEUED).update(status=Status.CANCELLED)
        for thread in held:
            thread.join(timeout=60)
    assert waiting.in_progress() == 0
    assert {name: answer.status_code for name, answer in answers.items()} == {"alice": 409, "bob": 409}

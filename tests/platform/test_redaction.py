"""What the masker finds secret in an envelope, and what it scrubs from free text."""

from __future__ import annotations

import pygigo
from pygigo.platform import redaction
from pygigo.platform.envelope import Envelope


@pygigo.function(sensitive=("password", "pin"))
def redaction_login(user: str, password: str, extra: dict[str, str] | None = None) -> None:
    """Declared only to be masked."""


def test_credentials_are_masked_and_the_parts_a_traceback_may_quote_are_remembered() -> None:
    envelope = Envelope(
        function="f",
        kind="http",
        method="POST",
        path="/",
        headers=(
            ("Authorization", "Bearer tok-123456"),
            ("Cookie", "sessionid=sess-abcdef; theme=dark"),
            ("Accept", "text/html"),
        ),
    )
    masked, values = redaction.mask_envelope(envelope.to_dict(), None)
    assert masked["headers"] == [["Authorization", "***"], ["Cookie", "***"], ["Accept", "text/html"]]
    text = "refused tok-123456 for session sess-abcdef in the dark"
    # "dark" is 4 characters: masked where it sits, and scrubbed too; "Bearer" is not a secret.
    assert redaction.scrub(text, values) == "refused *** for session *** in the ***"
    assert "Bearer" not in values


def test_arguments_are_masked_by_name_by_position_and_inside_values() -> None:
    envelope = Envelope(
        function=redaction_login.name,
        kind="call",
        args=("ann", "pw-secret-1"),
        kwargs={"extra": {"pin": "9876", "note": "ok"}},
    )
    masked, values = redaction.mask_envelope(envelope.to_dict(), redaction_login)
    assert masked["args"] == ["ann", "***"]
    assert masked["kwargs"] == {"extra": {"pin": "***", "note": "ok"}}
    assert values == {"pw-secret-1", "9876"}


def test_short_values_are_masked_in_place_but_not_scrubbed_from_text() -> None:
    envelope = Envelope(function=redaction_login.name, kind="call", args=("ann", "1"))
    masked, values = redaction.mask_envelope(envelope.to_dict(), redaction_login)
    assert masked["args"] == ["ann", "***"]
    assert redaction.scrub("line 1 of 12", values) == "line 1 of 12"

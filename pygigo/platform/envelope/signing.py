"""HMAC-SHA256 signing of envelopes, with key rotation.

Wire form: the envelope's ``to_dict()`` plus two keys, ``kid`` (key id) and ``sig``
(lowercase hex HMAC-SHA256 of the canonical JSON of everything else: sorted keys, compact
separators, UTF-8). The key id is the first 8 hex digits of SHA-256 of the key, so it
names a key without revealing it. :func:`seal` writes the two keys after the canonical JSON
it signed, so an envelope is serialised once; :func:`verify` does not rely on that layout
(it parses the object, drops the two keys and serialises the rest canonically again).

Rotation: pass keys newest first. The first key signs; any listed key verifies. To rotate,
deploy ``[new, old]`` everywhere, wait until no old-signed envelope is in flight, then
drop ``old``.

A worker must call :func:`verify` (or :func:`unseal`) before acting on anything: it checks
the signature *before* trusting any field, and only then the deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .model import (
    Envelope,
    EnvelopeError,
    EnvelopeExpired,
    EnvelopeSignatureError,
    canonical_json,
    parse_json,
)

_SIG_KEYS = ("kid", "sig")
_SIG_RE = re.compile(r"^[0-9a-f]{64}$")


def _key_bytes(key: str | bytes) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes) or not key:
        raise ValueError("signing keys must be non-empty str or bytes")
    return key


def _keys(keys: Sequence[str | bytes]) -> list[bytes]:
    # A bare string is a Sequence too; treating it as a list of one-character keys would
    # be a silent, catastrophic misconfiguration.
    if isinstance(keys, str | bytes):
        raise ValueError("pass a list of keys (newest first), not a single key")
    out = [_key_bytes(k) for k in keys]
    if not out:
        raise ValueError("no envelope signing keys configured; set at least one key")
    return out


def key_id(key: str | bytes) -> str:
    """Public identifier of a key: first 8 hex digits of its SHA-256."""
    return hashlib.sha256(_key_bytes(key)).hexdigest()[:8]


class Signer:
    """Signs with the first of ``keys`` (newest first), keyed once: a process seals many
    envelopes with the same key. Thread-safe (the keyed HMAC is copied, never updated)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        key = _keys(keys)[0]
        self.kid = key_id(key)
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def seal(self, payload: bytes) -> bytes:
        """``payload``, the canonical JSON of an unsigned envelope (``Envelope.encode()``), as
        wire bytes: the same bytes with ``kid`` and ``sig`` added at the end."""
        mac = self._keyed.copy()
        mac.update(payload)
        return b'%s,"kid":"%s","sig":"%s"}' % (payload[:-1], self.kid.encode(), mac.hexdigest().encode())


def _mac(key: bytes, payload: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical_json(payload), hashlib.sha256).hexdigest()


def sign(envelope_dict: Mapping[str, Any], keys: Sequence[str | bytes]) -> dict[str, Any]:
    """Return a copy of ``envelope_dict`` with ``kid`` and ``sig`` added, signed by ``keys[0]``.

    Raises ValueError if no usable key is given, EnvelopeError if the dict already carries
    a signature (re-signing a signed dict would silently sign the old signature too).
    """
    if any(k in envelope_dict for k in _SIG_KEYS):
        raise EnvelopeError("envelope dict is already signed; sign the plain to_dict() output")
    signing_key = _keys(keys)[0]
    signed = dict(envelope_dict)
    signed["kid"] = key_id(signing_key)
    signed["sig"] = _mac(signing_key, envelope_dict)
    return signed


def verify(signed_dict: Any, keys: Sequence[str | bytes], *, now: float | None = None) -> Envelope:
    """Check the signature, then the deadline, and return the envelope.

    Raises EnvelopeSignatureError if ``kid``/``sig`` are missing or malformed, the key id
    matches none of ``keys``, or the MAC does not match; EnvelopeExpired if the (now
    trusted) deadline is earlier than ``now`` (default: the current time); EnvelopeError
    for a correctly signed but invalid envelope (e.g. a version this worker does not know).
    """
    candidates = _keys(keys)
    if not isinstance(signed_dict, Mapping):
        raise EnvelopeSignatureError(f"expected a signed envelope object, got {type(signed_dict).__name__}")
    kid, sig = signed_dict.get("kid"), signed_dict.get("sig")
    if kid is None or sig is None:
        raise EnvelopeSignatureError(
            "envelope is unsigned (no 'kid'/'sig'); refusing it. Was it sent by something other than Pygigo?"
        )
    if not isinstance(kid, str) or not isinstance(sig, str) or not _SIG_RE.match(sig):
        raise EnvelopeSignatureError("envelope signature is malformed")
    payload = {k: v for k, v in signed_dict.items() if k not in _SIG_KEYS}
    matching = [k for k in candidates if hmac.compare_digest(key_id(k), kid)]
    if not matching:
        raise EnvelopeSignatureError(
            f"envelope signed with unknown key id {kid!r}; known ids: "
            f"{[key_id(k) for k in candidates]}. The key was rotated out or the sender is "
            "configured with different keys."
        )
    # Two keys may share a 32-bit id by accident; accept if any of them matches.
    if not any(hmac.compare_digest(_mac(k, payload), sig) for k in matching):
        raise EnvelopeSignatureError("envelope signature does not match its content (forged or altered)")
    envelope = Envelope.from_dict(payload)
    current = time.time() if now is None else now
    if envelope.deadline is not None and current > envelope.deadline:
        raise EnvelopeExpired(
            f"envelope {envelope.id} expired {current - envelope.deadline:.3f}s ago (deadline "
            f"{envelope.deadline}); it was not started in time"
        )
    return envelope


def seal(envelope: Envelope, keys: Sequence[str | bytes]) -> bytes:
    """Envelope → signed wire bytes (JSON; see the module docstring)."""
    return Signer(keys).seal(envelope.encode())


def unseal(data: bytes | str, keys: Sequence[str | bytes], *, now: float | None = None) -> Envelope:
    """Signed wire bytes → verified envelope. Same errors as :func:`verify`."""
    return verify(parse_json(data), keys, now=now)

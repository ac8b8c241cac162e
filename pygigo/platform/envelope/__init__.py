"""Envelope codec: versioned, signed JSON for one request or call (never pickle).

Public API (see the submodules for contracts):

* :mod:`.model` — :class:`Envelope`, the exception tree, body helpers.
* :mod:`.signing` — :func:`sign` / :func:`verify` (HMAC-SHA256, key rotation),
  :func:`seal` / :func:`unseal` for wire bytes.
* :mod:`.headers` — :func:`filter_headers` (allow-list, secret and hop-by-hop stripping).
* :mod:`.claimcheck` — :class:`ClaimCheckStore`, :class:`FileClaimCheckStore`,
  :func:`offload_body` / :func:`restore_body`.

Pure Python: nothing here imports Django, so the platform layer stays below django_site.
"""

from __future__ import annotations

from .claimcheck import ClaimCheckStore, FileClaimCheckStore, offload_body, pointer_for, restore_body
from .headers import DEFAULT_FORWARD_HEADERS, HOP_BY_HOP_HEADERS, SECRET_HEADERS, filter_headers
from .model import (
    ENVELOPE_VERSION,
    SUPPORTED_VERSIONS,
    ClaimCheckError,
    Envelope,
    EnvelopeError,
    EnvelopeExpired,
    EnvelopeSignatureError,
    canonical_json,
    decode_body,
    encode_body,
    new_id,
)
from .signing import Signer, key_id, seal, sign, unseal, verify

__all__ = [
    "DEFAULT_FORWARD_HEADERS",
    "ENVELOPE_VERSION",
    "HOP_BY_HOP_HEADERS",
    "SECRET_HEADERS",
    "SUPPORTED_VERSIONS",
    "ClaimCheckError",
    "ClaimCheckStore",
    "Envelope",
    "EnvelopeError",
    "EnvelopeExpired",
    "EnvelopeSignatureError",
    "FileClaimCheckStore",
    "Signer",
    "canonical_json",
    "decode_body",
    "encode_body",
    "filter_headers",
    "key_id",
    "new_id",
    "offload_body",
    "pointer_for",
    "restore_body",
    "seal",
    "sign",
    "unseal",
    "verify",
]

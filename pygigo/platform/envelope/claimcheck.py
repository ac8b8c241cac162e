"""Claim check: bodies too big for the broker travel as a pointer.

A :class:`ClaimCheckStore` keeps raw body bytes; the envelope keeps only the pointer in
``claim_check``. Pointers are content addresses, ``"sha256:<64 hex>"``, so putting the
same bytes twice is idempotent and a reader can check integrity without trusting the store.

Because identical bodies share one blob, ``delete`` is only safe when no queued envelope
can still refer to it; :meth:`FileClaimCheckStore.purge` sweeps by age instead, which is
the recommended way to collect garbage (run it with an age above the longest max-age /
retry horizon).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

from .model import ClaimCheckError, Envelope

_POINTER_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


def pointer_for(data: bytes) -> str:
    """The content address of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _digest(pointer: str) -> str:
    # Strict parsing doubles as path-traversal protection for file-backed stores.
    match = _POINTER_RE.match(pointer) if isinstance(pointer, str) else None
    if not match:
        raise ClaimCheckError(f"invalid claim-check pointer {pointer!r}; expected 'sha256:<64 hex>'")
    return match.group(1)


@runtime_checkable
class ClaimCheckStore(Protocol):
    """Where offloaded bodies live. Implementations must be safe to share between
    threads and processes (web and workers run on different machines in production).

    * ``put(data) -> pointer``: idempotent; the same bytes give the same pointer.
    * ``get(pointer) -> bytes``: raises ClaimCheckError if missing or corrupt.
    * ``delete(pointer)``: idempotent; deleting a missing pointer is not an error.
    """

    def put(self, data: bytes) -> str: ...

    def get(self, pointer: str) -> bytes: ...

    def delete(self, pointer: str) -> None: ...


class FileClaimCheckStore:
    """Blobs as files under ``directory`` (a shared volume when workers are remote).

    Layout ``<directory>/<2 hex>/<64 hex>``. Writes go to a temporary file in the same
    directory and are renamed into place, so a reader never sees a half-written blob.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest

    def put(self, data: bytes) -> str:
        pointer = pointer_for(data)
        path = self._path(_digest(pointer))
        if path.exists():
            # Refresh the age so purge() does not collect a blob just handed out again.
            os.utime(path)
            return pointer
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic on POSIX; concurrent puts write identical bytes
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return pointer

    def get(self, pointer: str) -> bytes:
        digest = _digest(pointer)
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            raise ClaimCheckError(
                f"claim-check blob {pointer} not found in {self.directory}; it was purged, deleted, "
                "or this worker does not share the web server's claim-check directory"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ClaimCheckError(f"claim-check blob {pointer} is corrupt (content hash mismatch)")
        return data

    def delete(self, pointer: str) -> None:
        self._path(_digest(pointer)).unlink(missing_ok=True)

    def purge(self, older_than_s: float, *, now: float | None = None) -> int:
        """Delete blobs last put more than ``older_than_s`` seconds ago; return how many."""
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = 0
        for path in self.directory.glob("??/*"):
            if path.name.startswith(".tmp-"):
                continue
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # raced with another purger or delete
                continue
        return removed


def offload_body(envelope: Envelope, store: ClaimCheckStore, max_inline_bytes: int) -> Envelope:
    """Move an http body larger than ``max_inline_bytes`` (as encoded in JSON) into ``store``.

    Returns the envelope unchanged when it is a call, already offloaded, or small enough;
    otherwise a copy with ``body=""`` and ``claim_check`` set. ``body_encoding`` is kept so
    :func:`restore_body` reproduces the exact same envelope.
    """
    if envelope.kind != "http" or envelope.claim_check is not None:
        return envelope
    if len(envelope.body.encode("utf-8")) <= max_inline_bytes:
        return envelope
    pointer = store.put(envelope.body_bytes())
    return dataclasses.replace(envelope, body="", claim_check=pointer)


def restore_body(envelope: Envelope, store: ClaimCheckStore) -> Envelope:
    """Inverse of :func:`offload_body`: fetch the body back (the blob is not deleted)."""
    if envelope.claim_check is None:
        return envelope
    data = store.get(envelope.claim_check)
    if pointer_for(data) != envelope.claim_check:  # do not trust a third-party store
        raise ClaimCheckError(f"claim-check store returned wrong content for {envelope.claim_check}")
    if envelope.body_encoding == "utf-8":
        try:
            body = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ClaimCheckError("offloaded body is not UTF-8 but the envelope says it was") from None
    else:
        # Same encoding as before offloading, so restore(offload(e)) == e exactly.
        body = base64.b64encode(data).decode("ascii")
    return dataclasses.replace(envelope, body=body, claim_check=None)

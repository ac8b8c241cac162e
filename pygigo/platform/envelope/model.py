"""The envelope: one unit of work, as versioned JSON.

An :class:`Envelope` is what travels through the broker. It is a frozen dataclass so a
worker cannot accidentally mutate what it was given; use :func:`dataclasses.replace` to
derive a changed copy. It never contains Python objects that need pickle: every field is
a JSON value, checked on construction (the one thing left to ``encode()`` is rejecting
strings with lone surrogates, which have no UTF-8 form).

Contract:

* ``Envelope.from_dict(d)`` accepts exactly the keys ``to_dict()`` produces (optional ones
  may be missing and take their defaults); unknown keys, wrong types or a kind-inconsistent
  combination raise :class:`EnvelopeError` naming the field.
* ``version`` is checked first; an unsupported version raises :class:`EnvelopeError`
  naming :data:`SUPPORTED_VERSIONS`.
* ``decode(envelope.encode()) == envelope`` for every envelope (JSON arguments included,
  as long as they use lists rather than tuples inside).

Exception tree::

    ValueError
     └── EnvelopeError                 malformed, unknown version, bad field
          ├── EnvelopeSignatureError   unsigned, forged, unknown key id
          ├── EnvelopeExpired          deadline passed before the work started
          └── ClaimCheckError          offloaded body missing or corrupt
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ...adapters.errors import PygigoError

ENVELOPE_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

Kind = Literal["http", "call"]
BodyEncoding = Literal["utf-8", "base64"]

# RFC 9110 token: what a method name may be made of.
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEX32_RE = re.compile(r"^[0-9a-f]{32}$")
_PRINCIPAL_KEYS = frozenset({"user_id", "api_key_id", "is_staff"})
# Fields that only make sense for kind="http" (checked to be at their defaults for "call").
_HTTP_FIELDS = (
    "method",
    "path",
    "script_name",
    "scheme",
    "query",
    "headers",
    "body",
    "content_type",
    "route_kwargs",
    "client_addr",
    "claim_check",
)


class EnvelopeError(PygigoError, ValueError):
    """The envelope is malformed or cannot be handled by this version of Pygigo."""


class EnvelopeSignatureError(EnvelopeError):
    """The envelope is unsigned, forged, or signed with a key this process does not hold."""


class EnvelopeExpired(EnvelopeError):
    """The envelope's deadline passed before a worker could start it."""


class ClaimCheckError(EnvelopeError):
    """An offloaded body cannot be found or does not match its pointer."""


def new_id() -> str:
    """A fresh random identifier: 32 lowercase hex digits (uuid4)."""
    # uuid.uuid4().hex without building a UUID object: a third of the time, twice per envelope.
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def _check_json(value: Any, where: str) -> None:
    """Raise EnvelopeError unless ``value`` is plain JSON (finite floats, str keys)."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EnvelopeError(f"{where}: {value!r} is not representable in JSON")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EnvelopeError(f"{where}: object keys must be strings, got {key!r}")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise EnvelopeError(
        f"{where}: {type(value).__name__} is not a JSON value; pass str/int/float/bool/None/list/dict"
    )


def _pairs(value: Any, name: str) -> tuple[tuple[str, str], ...]:
    """Normalise a list of [name, value] pairs to a tuple of str 2-tuples."""
    if not isinstance(value, list | tuple):
        raise EnvelopeError(f"{name}: expected a list of [name, value] pairs, got {type(value).__name__}")
    out = []
    for i, pair in enumerate(value):
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
        ):
            raise EnvelopeError(f"{name}[{i}]: expected a [str, str] pair, got {pair!r}")
        out.append((pair[0], pair[1]))
    return tuple(out)


def _opt_str(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise EnvelopeError(f"{name}: expected a string or null, got {type(value).__name__}")


def _opt_time(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EnvelopeError(f"{name}: expected epoch seconds (a finite number), got {value!r}")
    return float(value)


def encode_body(data: bytes) -> tuple[str, BodyEncoding]:
    """Represent raw body bytes as JSON text: UTF-8 when they decode, base64 otherwise."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def decode_body(body: str, encoding: str) -> bytes:
    """Inverse of :func:`encode_body`."""
    if encoding == "utf-8":
        return body.encode("utf-8")
    return base64.b64decode(body.encode("ascii"), validate=True)


@dataclass(frozen=True)
class Envelope:
    """One request or call, ready to be signed and put on a broker.

    Times are epoch seconds (floats). ``query`` and ``headers`` keep order and repeats
    as ``(name, value)`` pairs. ``body`` is text; ``body_encoding`` says whether it is the
    UTF-8 body itself or base64 of arbitrary bytes. When ``claim_check`` is set the body
    lives in a claim-check store and ``body`` is empty (see ``claimcheck``).
    ``path`` is the full request path as the client sent it (decoded); ``script_name`` is
    the prefix the web server was mounted at, so ``path_info`` is the remainder.
    """

    function: str
    kind: Kind
    id: str = field(default_factory=new_id)
    version: int = ENVELOPE_VERSION
    # kind="call"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # kind="http"
    method: str | None = None
    path: str | None = None
    script_name: str = ""
    scheme: str = "http"
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    body_encoding: BodyEncoding = "utf-8"
    content_type: str | None = None
    route_kwargs: Mapping[str, Any] = field(default_factory=dict)
    client_addr: str | None = None
    claim_check: str | None = None
    # both kinds
    principal: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    deadline: float | None = None
    enqueued_at: float = field(default_factory=time.time)
    trace_id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        # Validate everything here, so a bad envelope fails where it is built (with a
        # field name in the message) and not later inside json.dumps on a worker.
        # object.__setattr__ is how a frozen dataclass normalises its own fields.
        set_ = object.__setattr__
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise EnvelopeError(f"version: expected an integer, got {self.version!r}")
        if self.version not in SUPPORTED_VERSIONS:
            raise EnvelopeError(
                f"unsupported envelope version {self.version}; this Pygigo supports versions "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))} (is the sender newer than the worker?)"
            )
        if not isinstance(self.id, str) or not _HEX32_RE.match(self.id):
            raise EnvelopeError(f"id: expected 32 lowercase hex digits, got {self.id!r}")
        if not isinstance(self.function, str) or not self.function:
            raise EnvelopeError(f"function: expected a non-empty name, got {self.function!r}")
        if self.kind not in ("http", "call"):
            raise EnvelopeError(f"kind: expected 'http' or 'call', got {self.kind!r}")
        if not isinstance(self.args, list | tuple):
            raise EnvelopeError(f"args: expected a list, got {type(self.args).__name__}")
        set_(self, "args", tuple(self.args))
        _check_json(list(self.args), "args")
        if not isinstance(self.kwargs, Mapping):
            raise EnvelopeError(f"kwargs: expected an object, got {type(self.kwargs).__name__}")
        set_(self, "kwargs", dict(self.kwargs))
        _check_json(self.kwargs, "kwargs")
        for name in ("method", "path", "content_type", "client_addr", "claim_check", "idempotency_key"):
            _opt_str(getattr(self, name), name)
        for name in ("script_name", "scheme", "body", "trace_id"):
            if not isinstance(getattr(self, name), str):
                raise EnvelopeError(f"{name}: expected a string, got {getattr(self, name)!r}")
        set_(self, "query", _pairs(self.query, "query"))
        set_(self, "headers", _pairs(self.headers, "headers"))
        if self.body_encoding not in ("utf-8", "base64"):
            raise EnvelopeError(f"body_encoding: expected 'utf-8' or 'base64', got {self.body_encoding!r}")
        if self.body_encoding == "base64":
            try:
                base64.b64decode(self.body.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise EnvelopeError(f"body: not valid base64 ({exc})") from None
        if not isinstance(self.route_kwargs, Mapping):
            raise EnvelopeError(f"route_kwargs: expected an object, got {type(self.route_kwargs).__name__}")
        set_(self, "route_kwargs", dict(self.route_kwargs))
        _check_json(self.route_kwargs, "route_kwargs")
        set_(self, "deadline", _opt_time(self.deadline, "deadline"))
        enqueued_at = _opt_time(self.enqueued_at, "enqueued_at")
        if enqueued_at is None:
            raise EnvelopeError("enqueued_at: expected epoch seconds, got null")
        set_(self, "enqueued_at", enqueued_at)
        self._check_principal()
        self._check_kind()

    def _check_principal(self) -> None:
        p = self.principal
        if p is None:
            return
        if not isinstance(p, Mapping):
            raise EnvelopeError(f"principal: expected an object or null, got {type(p).__name__}")
        unknown = set(p) - _PRINCIPAL_KEYS
        if unknown:
            raise EnvelopeError(
                f"principal: unknown keys {sorted(unknown)}; allowed: {sorted(_PRINCIPAL_KEYS)}"
            )
        for key in ("user_id", "api_key_id"):
            v = p.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | str)):
                raise EnvelopeError(f"principal.{key}: expected an int, a string or null, got {v!r}")
        if not isinstance(p.get("is_staff", False), bool):
            raise EnvelopeError(f"principal.is_staff: expected a boolean, got {p.get('is_staff')!r}")
        # Normalise to the full three-key form so signatures and equality are stable.
        object.__setattr__(
            self,
            "principal",
            {
                "user_id": p.get("user_id"),
                "api_key_id": p.get("api_key_id"),
                "is_staff": p.get("is_staff", False),
            },
        )

    def _check_kind(self) -> None:
        if self.kind == "http":
            if self.args or self.kwargs:
                raise EnvelopeError("an http envelope carries no args/kwargs; put data in the body")
            if not self.method or not _TOKEN_RE.match(self.method):
                raise EnvelopeError(f"method: expected an HTTP method token, got {self.method!r}")
            if not self.path or not self.path.startswith("/"):
                raise EnvelopeError(f"path: expected an absolute path starting with '/', got {self.path!r}")
            if self.script_name and not self.path.startswith(self.script_name.rstrip("/") + "/"):
                raise EnvelopeError(
                    f"path {self.path!r} does not start with script_name {self.script_name!r}"
                )
            if self.scheme not in ("http", "https"):
                raise EnvelopeError(f"scheme: expected 'http' or 'https', got {self.scheme!r}")
            if self.claim_check is not None and self.body:
                raise EnvelopeError("body must be empty when claim_check points to an offloaded body")
            return
        defaults = Envelope.__dataclass_fields__
        for name in _HTTP_FIELDS:
            f = defaults[name]
            default = f.default_factory() if callable(f.default_factory) else f.default
            if getattr(self, name) != default:
                raise EnvelopeError(f"{name}: only valid for kind='http', not for a call envelope")

    # -- body helpers ---------------------------------------------------------------------

    @property
    def path_info(self) -> str:
        """The path below ``script_name`` (what URL routing sees)."""
        if self.path is None:
            raise EnvelopeError("path_info is only defined for http envelopes")
        # _check_kind guarantees path starts with script_name (minus its slash) + "/".
        return self.path[len(self.script_name.rstrip("/")) :]

    def body_bytes(self) -> bytes:
        """The raw body. Raises ClaimCheckError if it was offloaded and not restored yet."""
        if self.claim_check is not None:
            raise ClaimCheckError(
                f"body was offloaded to {self.claim_check!r}; call restore_body() with the store first"
            )
        return decode_body(self.body, self.body_encoding)

    # -- (de)serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field (lists instead of tuples)."""
        # Not dataclasses.asdict: its recursive deep copy was a tenth of an accept's time.
        # The mappings are copied one level deep (callers edit the dict, not the values).
        d = {name: getattr(self, name) for name in _FIELD_NAMES}
        d["kwargs"] = dict(self.kwargs)
        d["route_kwargs"] = dict(self.route_kwargs)
        if self.principal is not None:
            d["principal"] = dict(self.principal)
        d["args"] = list(self.args)
        d["query"] = [list(p) for p in self.query]
        d["headers"] = [list(p) for p in self.headers]
        return d

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Build and validate an envelope from a decoded JSON object (see module contract)."""
        if not isinstance(data, Mapping):
            raise EnvelopeError(f"an envelope must be a JSON object, got {type(data).__name__}")
        if "version" not in data:
            raise EnvelopeError("missing 'version'; not a Pygigo envelope?")
        version = data["version"]
        if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
            raise EnvelopeError(
                f"unsupported envelope version {version!r}; this Pygigo supports versions "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
            )
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EnvelopeError(f"unknown envelope fields {sorted(unknown)} for version {version}")
        for required in ("id", "function", "kind", "enqueued_at"):
            if required not in data:
                raise EnvelopeError(f"missing required field {required!r}")
        try:
            return cls(**data)
        except TypeError as exc:  # e.g. a field given the wrong shape that dataclass rejects
            raise EnvelopeError(str(exc)) from None

    def encode(self) -> bytes:
        """Compact canonical JSON bytes (UTF-8, sorted keys). Unsigned: see ``signing``."""
        return canonical_json(self.to_dict())

    @classmethod
    def decode(cls, data: bytes | str) -> Envelope:
        """Parse :meth:`encode` output. Does not check any signature."""
        return cls.from_dict(parse_json(data))


_FIELD_NAMES = tuple(f.name for f in fields(Envelope))


def canonical_json(obj: Any) -> bytes:
    """The one byte form used both on the wire and as the HMAC input."""
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise EnvelopeError(f"cannot encode envelope as JSON: {exc}") from None


def parse_json(data: bytes | str) -> Any:
    """Parse JSON bytes, turning every parse failure into EnvelopeError."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"envelope is not valid JSON: {exc}") from None

"""Secrets at rest: what Pygigo keeps or prints of an invocation, masked.

Two kinds of secret travel to a worker, which receives them unchanged:

* credentials a function asked for (``forward_secrets=True``): the values of the
  :data:`~.envelope.SECRET_HEADERS` (Cookie, Authorization, X-Api-Key, …);
* values a function marks ``sensitive=("password", …)``: query parameters, body fields (form
  or JSON, at any depth), URL parameters of a dispatched view (and the path that holds them)
  and arguments, by name — like Django's ``sensitive_post_parameters``.

Everything kept after the run or shown to people gets a masked copy: the invocation record and
its admin page, ``db://`` dead letters and their admin page, Dramatiq's log lines about a
message. Error texts and tracebacks (a function that raises with its token in the message) are
scrubbed of every secret value found in the message. Values shorter than
:data:`MIN_SCRUBBED_CHARS` are masked where they sit but not searched for in free text, where
they would mask every ``1`` of a traceback.

A body the function marks fields of, but whose format is neither JSON nor a form (multipart,
binary), is masked whole: its fields cannot be found reliably.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from .envelope import SECRET_HEADERS

if TYPE_CHECKING:
    from .functions import Function

MASK = "***"
MIN_SCRUBBED_CHARS = 4
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})
_COOKIE_HEADERS = frozenset({"cookie", "set-cookie"})


class Masker:
    """Masks one message's secrets; :attr:`values` collects what it masked (for :func:`scrub`)."""

    def __init__(self, sensitive: Iterable[str] = ()) -> None:
        self.sensitive = frozenset(sensitive)
        self.values: set[str] = set()

    def hide(self, value: Any) -> str:
        self._remember(value)
        return MASK

    def _remember(self, value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                self._remember(item)
        elif isinstance(value, list | tuple):
            for item in value:
                self._remember(item)
        elif value is not None and not isinstance(value, bool):
            text = str(value)
            if len(text) >= MIN_SCRUBBED_CHARS:
                self.values.add(text)

    def fields(self, value: Any) -> Any:
        """A JSON value with whatever sits under a sensitive key (at any depth) masked."""
        if isinstance(value, dict):
            return {k: self.hide(v) if k in self.sensitive else self.fields(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fields(item) for item in value]
        return value

    def header(self, name: str, value: str) -> str:
        lowered = name.lower()
        if lowered not in SECRET_HEADERS:
            return value
        self._remember(value)
        # The parts a traceback may quote alone: a token without its scheme, a cookie's value.
        if lowered in _AUTH_HEADERS:
            self._remember(value.partition(" ")[2])
        elif lowered in _COOKIE_HEADERS:
            for pair in value.split(";"):
                self._remember(pair.partition("=")[2].strip())
        return MASK

    def pairs(self, pairs: Iterable[Iterable[str]]) -> list[list[str]]:
        """``[name, value]`` pairs (a query string) with sensitive names masked."""
        return [[name, self.hide(value) if name in self.sensitive else value] for name, value in pairs]

    def body(self, data: dict[str, Any]) -> None:
        """Mask sensitive fields of an http envelope dict's body, in place."""
        body = data.get("body") or ""
        if not body or not self.sensitive:
            return
        media = str(data.get("content_type") or "").split(";")[0].strip().lower()
        if data.get("body_encoding") == "utf-8":
            if media == "application/json" or media.endswith("+json"):
                try:
                    data["body"] = json.dumps(self.fields(json.loads(body)), ensure_ascii=False)
                    return
                except ValueError:
                    pass  # not JSON after all: masked whole below
            elif media == "application/x-www-form-urlencoded":
                pairs = parse_qsl(body, keep_blank_values=True)
                data["body"] = urlencode([(name, value) for name, value in self.pairs(pairs)])
                return
        data["body"] = self.hide(body)
        data["body_encoding"] = "utf-8"

    def arguments(
        self, function: Function[..., Any] | None, args: Iterable[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """A call's arguments with sensitive parameters (by name, also when passed by
        position) and sensitive keys inside them masked."""
        names: list[str] = []
        if function is not None and function.signature is not None:
            for parameter in function.signature.parameters.values():
                if parameter.kind not in (
                    inspect.Parameter.POSITIONAL_ONLY,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                ):
                    break
                names.append(parameter.name)
        masked_args = [
            self.hide(arg) if i < len(names) and names[i] in self.sensitive else self.fields(arg)
            for i, arg in enumerate(args)
        ]
        return masked_args, self.fields(dict(kwargs))


def sensitive_names(function: Function[..., Any] | None) -> tuple[str, ...]:
    return function.options.sensitive if function is not None else ()


def needs_masking(data: dict[str, Any], function: Function[..., Any] | None) -> bool:
    """Whether :func:`mask_envelope` would change the envelope dict ``data``: only when
    ``function`` marks fields sensitive or a secret header travels."""
    return bool(sensitive_names(function)) or any(
        name.lower() in SECRET_HEADERS for name, _ in data.get("headers") or ()
    )


def mask_envelope(
    data: dict[str, Any], function: Function[..., Any] | None
) -> tuple[dict[str, Any], set[str]]:
    """An envelope dict (signed or not) with its secrets masked, and the values masked. The
    result is for reading: it is never signed again."""
    masker = Masker(sensitive_names(function))
    masked = dict(data)
    masked["headers"] = [[name, masker.header(name, value)] for name, value in data.get("headers") or ()]
    if masker.sensitive:
        masked["query"] = masker.pairs(data.get("query") or ())
        masker.body(masked)
        masked["args"], masked["kwargs"] = masker.arguments(
            function, data.get("args") or (), data.get("kwargs") or {}
        )
        masked["route_kwargs"] = masker.fields(data.get("route_kwargs") or {})
        if isinstance(data.get("path"), str):  # a URL parameter is in the path too
            masked["path"] = scrub(data["path"], masker.values)
    return masked, masker.values


def mask_headers(pairs: Iterable[Iterable[str]]) -> list[list[str]]:
    """``[name, value]`` header pairs with the values of secret headers masked."""
    masker = Masker()
    return [[name, masker.header(name, value)] for name, value in pairs]


def scrub(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of ``values`` masked (longest first, so a value that
    contains another is masked whole)."""
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text

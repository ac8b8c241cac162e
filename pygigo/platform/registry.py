"""The function registry: every ``@pygigo.function`` by name, in this process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..adapters.base import ConfigurationError

if TYPE_CHECKING:
    import dramatiq

    from .functions import Function


class Registry:
    """Names → functions. Thread-safe; names are unique per process."""

    def __init__(self) -> None:
        self._functions: dict[str, Function[..., Any]] = {}
        self._lock = threading.Lock()

    def add(self, function: Function[..., Any]) -> None:
        with self._lock:
            existing = self._functions.get(function.name)
            if existing is not None and existing.origin != function.origin:
                raise ConfigurationError(
                    f"Two functions are named {function.name!r}: {existing.origin} and {function.origin}. "
                    f"Give one of them another name with @pygigo.function(name=...)."
                )
            self._functions[function.name] = function

    def get(self, name: str) -> Function[..., Any] | None:
        return self._functions.get(name)

    def __iter__(self) -> Iterator[Function[..., Any]]:
        return iter(list(self._functions.values()))

    def __len__(self) -> int:
        return len(self._functions)

    def queues(self) -> set[str]:
        return {function.queue for function in self}

    def bind_all(self, broker: dramatiq.Broker) -> None:
        for function in self:
            function.bind(broker)


registry = Registry()

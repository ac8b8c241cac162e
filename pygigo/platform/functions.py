"""``@pygigo.function``: a plain Python callable, registered as a Dramatiq actor.

The actor is bound lazily to the process's broker (see :mod:`.runtime`), so a functions module
can be imported before any broker is configured, and tests can swap brokers.

Units are in option names: ``time_limit_s``, ``min_backoff_s``. Priority follows RabbitMQ and
Celery: 0 (default) to 9, higher runs first. On brokers with ``supports_priority`` it is a
broker-level priority, carried by every message of the function (tracked and HTTP calls too);
for ``send`` it also orders work inside one worker's prefetch (envelope messages share one
internal actor, so there only the broker's order applies).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

import dramatiq

from ..adapters.base import CapabilityError, ConfigurationError, PygigoBroker, PygigoError
from . import results, runtime
from .registry import registry

P = ParamSpec("P")
R = TypeVar("R")

MAX_PRIORITY = 9


class BadArguments(PygigoError, TypeError):
    """The arguments do not fit the function's signature. Raised before sending, and on a
    worker before running; never retried (the same arguments would never fit)."""


@dataclasses.dataclass(frozen=True)
class FunctionOptions:
    """How a function runs. Validated when it is declared, not when it first runs."""

    queue: str = "default"
    max_retries: int = 3
    min_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    time_limit_s: float | None = 600.0
    max_age_s: float | None = None
    priority: int = 0
    #: May anyone invoke it over HTTP, without signing in?
    public: bool = False
    #: Forward Cookie and Authorization headers of an HTTP request to the function.
    forward_secrets: bool = False
    #: The HTTP methods that invoke it (anything else is 405): a GET or an OPTIONS preflight
    #: must not run a function that did not ask for it.
    methods: tuple[str, ...] = ("POST",)
    #: Names of query parameters, body fields (form or JSON, at any depth) and arguments whose
    #: values are masked wherever Pygigo keeps or prints an invocation (its record, the admin,
    #: logs, dead letters); the function itself still receives them.
    sensitive: tuple[str, ...] = ()
    #: Keep the return value of ``send``/``message`` calls (``message.get_result()``, a
    #: pipeline's or group's results); needs ``PYGIGO_RESULTS``. Tracked invocations always
    #: keep theirs, in the invocation record.
    store_results: bool = False

    def __post_init__(self) -> None:
        if not self.queue or not self.queue.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ConfigurationError(f"queue={self.queue!r}: use letters, digits, '-', '_' and '.' only.")
        if self.queue.endswith((".DQ", ".XQ")):
            raise ConfigurationError(f"queue={self.queue!r}: names ending in .DQ/.XQ are reserved.")
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries={self.max_retries}: must be 0 or more.")
        if not 0 <= self.min_backoff_s <= self.max_backoff_s:
            raise ConfigurationError("min_backoff_s must be >= 0 and <= max_backoff_s.")
        for name in ("time_limit_s", "max_age_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name}={value}: must be positive, or None for no limit.")
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise ConfigurationError(f"priority={self.priority}: must be between 0 and {MAX_PRIORITY}.")
        if isinstance(self.methods, str) or not self.methods:
            raise ConfigurationError(f"methods={self.methods!r}: give a non-empty tuple, e.g. ('POST',).")
        object.__setattr__(self, "methods", tuple(method.upper() for method in self.methods))
        if isinstance(self.sensitive, str):
            raise ConfigurationError(
                f"sensitive={self.sensitive!r}: give a tuple of names, e.g. ('password',)."
            )
        object.__setattr__(self, "sensitive", tuple(self.sensitive))

    def actor_options(self) -> dict[str, Any]:
        """The options as Dramatiq's middleware reads them (milliseconds)."""
        options: dict[str, Any] = {
            "max_retries": self.max_retries,
            "min_backoff": int(self.min_backoff_s * 1000),
            "max_backoff": int(self.max_backoff_s * 1000),
        }
        if self.time_limit_s is not None:
            options["time_limit"] = int(self.time_limit_s * 1000)
        if self.max_age_s is not None:
            options["max_age"] = int(self.max_age_s * 1000)
        return options


class Function(Generic[P, R]):
    """A registered function. Calling it runs it here; ``send`` runs it on a worker."""

    #: Invocable at ``/fn/<name>`` (False for what runs only as a Django task).
    over_http = True

    def __init__(self, fn: Callable[P, R], name: str, options: FunctionOptions) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self.queue = options.queue
        self.origin = f"{fn.__module__}.{fn.__qualname__}"
        self._broker: dramatiq.Broker | None = None
        self._actor: dramatiq.Actor[P, R] | None = None
        self._supports_priority = False
        self._stores_results = False
        #: A view takes the HTTP request first; other functions take JSON arguments.
        self.is_view = _first_parameter(fn) == "request"
        self.signature = _signature(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pygigo.Function {self.name!r} queue={self.queue!r}>"

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise BadArguments (naming the parameter) if ``fn(*args, **kwargs)`` cannot bind."""
        if self.signature is None:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise BadArguments(f"{self.name}{self.signature}: {exc}") from None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run here (what a worker runs); arguments that cannot bind raise BadArguments."""
        try:
            return self.fn(*args, **kwargs)
        except TypeError:
            # Checked only now, so a call that binds pays nothing: a TypeError from the
            # function's own code stays a TypeError (retried), one from binding does not.
            self.check_arguments(args, kwargs)
            raise

    def bind(self, broker: dramatiq.Broker) -> dramatiq.Actor[P, R]:
        """Declare this function as an actor on ``broker`` (idempotent per broker)."""
        if self._broker is not broker or self._actor is None:
            options: dict[str, Any] = {**self.options.actor_options(), "throws": (BadArguments,)}
            # Declared only where a results backend is configured (Dramatiq refuses the option
            # otherwise); sending then says what is missing (see _options).
            self._stores_results = self.options.store_results and results.stores_results(broker)
            if self._stores_results:
                options["store_results"] = True
            self._actor = dramatiq.Actor(
                self.run,
                broker=broker,
                actor_name=self.name,
                queue_name=self.queue,
                # Dramatiq runs lower numbers first; Pygigo's priority is "higher first".
                priority=-self.options.priority,
                options=options,
            )
            from .invocations import ACTOR_LOG_FILTER  # imports this module

            self._actor.logger.addFilter(ACTOR_LOG_FILTER)
            caps = getattr(broker, "capabilities", None)
            self._supports_priority = bool(caps and caps.supports_priority)
            self._broker = broker
        return self._actor

    @property
    def actor(self) -> dramatiq.Actor[P, R]:
        """The Dramatiq actor on the process's current broker."""
        broker = runtime.get_broker()
        if broker is not self._broker or self._actor is None:
            return self.bind(broker)
        return self._actor

    def send(self, *args: P.args, **kwargs: P.kwargs) -> dramatiq.Message[R]:
        """Enqueue a call with JSON-serialisable arguments; returns the message."""
        return self.send_with_options(args=args, kwargs=kwargs)

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay_s: float | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> dramatiq.Message[R]:
        """Enqueue with per-message options: ``delay_s`` (run no earlier than that many
        seconds from now), ``priority`` (0-9; other than the function's own only on brokers
        with ``supports_priority``, else CapabilityError), and Dramatiq message options. Raises
        BadArguments if the arguments do not fit the signature."""
        self.check_arguments(args, kwargs or {})
        actor = self.actor
        delay = None if delay_s is None else max(0, int(delay_s * 1000))
        return actor.send_with_options(
            args=args, kwargs=kwargs or {}, delay=delay, **self._options(priority, options)
        )

    def message(self, *args: P.args, **kwargs: P.kwargs) -> dramatiq.Message[R]:
        """A message for this function, not sent: a step of a Dramatiq ``pipeline`` or a member
        of a ``group`` (signed when they enqueue it, like every message). A pipeline appends
        the previous step's result to the arguments, so only arguments that can never fit
        (too many, unknown names) raise BadArguments here."""
        return self.message_with_options(args=args, kwargs=kwargs)

    def message_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        priority: int | None = None,
        **options: Any,
    ) -> dramatiq.Message[R]:
        """:meth:`message` with per-message options, as :meth:`send_with_options` takes them
        (``priority``, and Dramatiq's, e.g. ``pipe_ignore=True``); a delay is given to the
        pipeline's or group's ``run(delay=...)``."""
        if self.signature is not None:
            try:
                self.signature.bind_partial(*args, **(kwargs or {}))
            except TypeError as exc:
                raise BadArguments(f"{self.name}{self.signature}: {exc}") from None
        actor = self.actor
        return actor.message_with_options(args=args, kwargs=kwargs or {}, **self._options(priority, options))

    def _options(self, priority: int | None, options: dict[str, Any]) -> dict[str, Any]:
        """The message options of one call: ``options`` plus the broker priority; raises what
        this broker cannot honour rather than dropping it. Call after ``self.actor`` (bound)."""
        if self.options.store_results and not self._stores_results:
            raise ConfigurationError(
                f"{self.name!r} has store_results=True, but no results backend is configured: set "
                "PYGIGO_RESULTS (e.g. 'redis://127.0.0.1:6379/0') for every process that sends or runs it."
            )
        if priority is None:
            priority = self.options.priority
        elif not 0 <= priority <= MAX_PRIORITY:
            raise ConfigurationError(f"priority={priority}: must be between 0 and {MAX_PRIORITY}.")
        elif priority != self.options.priority and not self._supports_priority:
            # Only the function's own priority orders work (inside each worker) on this broker:
            # a per-call one would be silently dropped.
            raise CapabilityError(
                f"priority={priority}: this broker has no per-message priority (supports_priority is "
                f"false); only {self.name!r}'s own priority={self.options.priority} applies. Drop the "
                "argument, or use RabbitMQ or db://."
            )
        if priority and self._supports_priority:
            options["broker_priority"] = priority
        return options

    def invoke(self, *args: Any, wait: float | None = None, **kwargs: Any) -> Any:
        """Run on a worker as a *tracked* invocation (a signed envelope, recorded in the
        database) and, when ``wait`` is given, wait up to that many seconds for the result.

        Returns the function's return value (``wait`` set) or the invocation id (``wait``
        None). Raises InvocationFailed if it failed or was cancelled, InvocationTimeout if it
        did not finish in time (it may still run). Needs the Pygigo Django app installed.
        """
        from .invocations import get_invoker

        self.check_arguments(args, kwargs)
        return get_invoker()(self, args, kwargs, wait)

    def send_many(self, calls: Iterable[tuple[Any, ...] | dict[str, Any]]) -> list[dramatiq.Message[R]]:
        """Enqueue many calls in as few broker round trips as the broker allows. Each call is
        a tuple of positional arguments or a dict of keyword arguments. Returns once the
        broker has them all (batched publisher confirms on RabbitMQ)."""
        actor = self.actor
        options = self._options(None, {})
        calls = list(calls)
        for call in calls:
            if isinstance(call, tuple):
                self.check_arguments(call, {})
            else:
                self.check_arguments((), call)
        messages = [
            actor.message_with_options(args=call, **options)
            if isinstance(call, tuple)
            else actor.message_with_options(kwargs=call, **options)
            for call in calls
        ]
        broker = actor.broker
        if isinstance(broker, PygigoBroker):
            return broker.enqueue_many(messages)
        return [broker.enqueue(message) for message in messages]


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        # Evaluated annotations read better in error messages ("x: int", not "x: 'int'").
        return inspect.signature(fn, eval_str=True)
    except Exception:  # an annotation naming what only exists for type checkers
        pass
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: their arguments go unchecked
        return None


def _first_parameter(fn: Callable[..., Any]) -> str | None:
    signature = _signature(fn)
    parameters = list(signature.parameters) if signature else []
    return parameters[0] if parameters else None


@overload
def function(fn: Callable[P, R], /) -> Function[P, R]: ...
@overload
def function(
    *,
    name: str | None = None,
    queue: str = "default",
    max_retries: int = 3,
    min_backoff_s: float = 1.0,
    max_backoff_s: float = 300.0,
    time_limit_s: float | None = 600.0,
    max_age_s: float | None = None,
    priority: int = 0,
    public: bool = False,
    forward_secrets: bool = False,
    methods: tuple[str, ...] = ("POST",),
    sensitive: tuple[str, ...] = (),
    store_results: bool = False,
) -> Callable[[Callable[P, R]], Function[P, R]]: ...


def function(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any) -> Any:
    """Register ``fn`` as a Pygigo function (usable bare or with options; see FunctionOptions)."""
    unknown = set(options) - {f.name for f in dataclasses.fields(FunctionOptions)}
    if unknown:
        known = ", ".join(["name", *(f.name for f in dataclasses.fields(FunctionOptions))])
        raise ConfigurationError(
            f"Unknown option(s) {', '.join(sorted(unknown))} for @pygigo.function. Known: {known}."
        )
    parsed = FunctionOptions(**options)

    def decorate(target: Callable[P, R]) -> Function[P, R]:
        wrapped: Function[P, R] = Function(target, name or target.__name__, parsed)
        registry.add(wrapped)
        broker = runtime.active_broker()
        if broker is not None:
            wrapped.bind(broker)
        return wrapped

    return decorate(fn) if fn is not None else decorate

"""Routers map topics to the plain functions that handle their timers."""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import attrs

from . import defaults
from .errors import ConfigurationError, InvalidHandlerError, InvalidTimerError
from .models import Delivery
from .retry import RetryPolicy
from .validation import check_topic, seconds_of

F = TypeVar("F", bound=Callable[..., Any])

#: A topic's own rules for its payloads: called by set_timer(s) with each payload (after the
#: type check, before anything is written); raises InvalidTimerError or PayloadTypeError.
PayloadCheck = Callable[[Any], None]


def _name(func: Callable[..., Any]) -> str:
    return repr(getattr(func, "__qualname__", None) or func)


def check_handler(func: Callable[..., Any], topic: str) -> None:
    """Refuse what the handler threads could never run: an async function (its coroutine
    would be made and never awaited, and the timer counted as delivered), a generator
    function (its body would never run), or a callable that cannot take the payload."""
    call = getattr(func, "__call__", None)  # noqa: B004  # an object with async __call__
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call):
        raise InvalidHandlerError(
            f"handler {_name(func)} of topic {topic!r} is an async function: handlers run "
            "in threads and nothing would await it; make it a plain def (inside it, "
            "asyncio.run(...) can run a coroutine)"
        )
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise InvalidHandlerError(
            f"handler {_name(func)} of topic {topic!r} is a generator function: calling it "
            "would run none of its body; make it a plain def that does the work"
        )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: trusted as they are
        return
    for arity in (1, 2):
        try:
            signature.bind(*range(arity))
        except TypeError:
            continue
        return
    raise InvalidHandlerError(
        f"handler {_name(func)} of topic {topic!r} cannot be called with the payload, nor "
        f"with the payload and a Delivery: its signature is {signature}"
    )


def takes_delivery(func: Callable[..., Any]) -> bool:
    """True when `func` wants the Delivery as its second positional argument: a second
    parameter without a default, or one named `delivery` or annotated `Delivery` (so that
    `def handle(payload, retries=3)` is not handed a Delivery as `retries`).
    """
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: pass the payload only
        return False
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not positional and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InvalidHandlerError(
            f"handler {_name(func)} must accept the payload as its first positional parameter"
        )
    if len(positional) < 2:
        return any(p.kind is p.VAR_POSITIONAL for p in params)
    second = positional[1]
    annotation = second.annotation
    return (
        second.default is second.empty
        or second.name == "delivery"
        or annotation is Delivery
        or (isinstance(annotation, str) and annotation.split(".")[-1].startswith("Delivery"))
    )


@attrs.frozen
class HandlerSpec:
    """A topic's handler and how this process runs it."""

    topic: str
    func: Callable[..., Any]
    payload_type: Any | None
    max_concurrent: int
    lease_ttl: float
    retry: RetryPolicy | None
    takes_delivery: bool
    payload_check: PayloadCheck | None = None

    @property
    def lease_ms(self) -> int:
        return int(self.lease_ttl * 1000)


class Router:
    """A set of topic handlers, registered with `@router.handler(topic, ...)`."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def handler(
        self,
        topic: str,
        *,
        payload: Any | None = None,
        max_concurrent: int = defaults.MAX_CONCURRENT,
        lease_ttl: float | dt.timedelta = defaults.LEASE_TTL,
        retry: RetryPolicy | None = None,
        payload_check: PayloadCheck | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of `topic`.

        `payload` is the type timers of this topic carry (checked when scheduling, decoded
        for the handler); without it the handler gets the JSON value. At most
        `max_concurrent` handlers of this topic run at once in one process; `lease_ttl`
        seconds is how long a crashed worker can hold a timer; `retry` overrides the
        scheduler's retry policy for this topic; `payload_check` (a PayloadCheck) refuses
        payloads when they are scheduled by a process with this router.
        """
        try:
            check_topic(topic)
            lease_seconds = seconds_of(lease_ttl, "lease_ttl")
        except InvalidTimerError as exc:
            raise ConfigurationError(str(exc)) from exc
        if topic in self._specs:
            raise ConfigurationError(f"topic {topic!r} already has a handler in this router")
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool) or (
            max_concurrent < 1
        ):
            raise ConfigurationError(
                f"max_concurrent for topic {topic!r} must be an int >= 1, got {max_concurrent!r}"
            )
        if lease_seconds < defaults.MIN_LEASE_TTL:
            raise ConfigurationError(
                f"lease_ttl for topic {topic!r} must be at least {defaults.MIN_LEASE_TTL}s, "
                f"got {lease_ttl!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry for topic {topic!r} must be a RetryPolicy, got {type(retry).__name__}"
            )
        if payload_check is not None and not callable(payload_check):
            raise ConfigurationError(
                f"payload_check for topic {topic!r} must be callable, "
                f"got {type(payload_check).__name__}"
            )

        def register(func: F) -> F:
            if not callable(func):
                raise InvalidHandlerError(
                    f"handler for topic {topic!r} must be callable, got {type(func).__name__}"
                )
            check_handler(func, topic)
            self._specs[topic] = HandlerSpec(
                topic=topic,
                func=func,
                payload_type=payload,
                max_concurrent=max_concurrent,
                lease_ttl=lease_seconds,
                retry=retry,
                takes_delivery=takes_delivery(func),
                payload_check=payload_check,
            )
            return func

        return register

    @property
    def topics(self) -> list[str]:
        return list(self._specs)

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(self._specs.values())

    def __contains__(self, topic: object) -> bool:
        return topic in self._specs

    def __len__(self) -> int:
        return len(self._specs)


def merge_routers(routers: Iterable[Router]) -> dict[str, HandlerSpec]:
    """Topic -> handler of all routers; a topic handled twice is a configuration error."""
    specs: dict[str, HandlerSpec] = {}
    for router in routers:
        if not isinstance(router, Router):
            raise ConfigurationError(f"routers must be Router objects, got {type(router).__name__}")
        for spec in router:
            if spec.topic in specs:
                raise ConfigurationError(f"topic {spec.topic!r} has a handler in two routers")
            specs[spec.topic] = spec
    return specs

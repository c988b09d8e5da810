"""Unit tests of redistimers.router: registering handlers and reading their signatures."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from redistimers import (
    ConfigurationError,
    Delivery,
    InvalidHandlerError,
    RedisTimersError,
    RetryPolicy,
    Router,
    defaults,
)
from redistimers.router import HandlerSpec, merge_routers, takes_delivery


@attrs.frozen
class InvoiceDue:
    invoice_id: str
    amount_cents: int


# -- registration -----------------------------------------------------------------------


def test_handler_registers_the_function_with_its_settings() -> None:
    router = Router()
    policy = RetryPolicy(max_attempts=5)

    @router.handler(
        "invoices", payload=InvoiceDue, max_concurrent=8, lease_ttl=12.5, retry=policy
    )
    def on_invoice(invoice: InvoiceDue, delivery: Delivery) -> None:
        pass

    assert router.topics == ["invoices"]
    assert "invoices" in router
    assert "other" not in router
    assert len(router) == 1
    (spec,) = list(router)
    assert spec == HandlerSpec(
        topic="invoices",
        func=on_invoice,
        payload_type=InvoiceDue,
        max_concurrent=8,
        lease_ttl=12.5,
        retry=policy,
        takes_delivery=True,
    )
    assert spec.lease_ms == 12500


def test_decorator_returns_the_function_unchanged() -> None:
    router = Router()

    def on_tick(payload: Any) -> str:
        return "called"

    assert router.handler("ticks")(on_tick) is on_tick
    assert on_tick(None) == "called"


def test_handler_defaults() -> None:
    router = Router()

    @router.handler("ticks")
    def on_tick(payload: Any) -> None:
        pass

    (spec,) = list(router)
    assert spec.payload_type is None
    assert spec.max_concurrent == defaults.MAX_CONCURRENT
    assert spec.lease_ttl == defaults.LEASE_TTL
    assert spec.retry is None
    assert spec.takes_delivery is False


def test_lease_ttl_as_timedelta_is_converted_to_seconds() -> None:
    router = Router()
    router.handler("ticks", lease_ttl=dt.timedelta(minutes=2))(lambda payload: None)
    (spec,) = list(router)
    assert spec.lease_ttl == 120.0
    assert spec.lease_ms == 120_000


def test_lease_ttl_at_the_minimum_is_accepted() -> None:
    router = Router()
    router.handler("ticks", lease_ttl=defaults.MIN_LEASE_TTL)(lambda payload: None)
    (spec,) = list(router)
    assert spec.lease_ms == 100


def test_topics_keep_registration_order() -> None:
    router = Router()
    for topic in ("c", "a", "b"):
        router.handler(topic)(lambda payload: None)
    assert router.topics == ["c", "a", "b"]
    assert [spec.topic for spec in router] == ["c", "a", "b"]


def test_same_topic_twice_in_one_router_is_rejected() -> None:
    router = Router()
    router.handler("invoices")(lambda payload: None)
    with pytest.raises(ConfigurationError, match="'invoices' already has a handler"):
        router.handler("invoices")


@pytest.mark.parametrize("topic", ["", "{invoices}", "a}b", "x" * 201, "new\nline"])
def test_bad_topic_is_rejected_at_registration(topic: str) -> None:
    router = Router()
    with pytest.raises(ConfigurationError) as info:
        router.handler(topic)
    assert isinstance(info.value, ValueError)
    assert len(router) == 0


@pytest.mark.parametrize("max_concurrent", [0, -1, 1.5, True, "4", None])
def test_bad_max_concurrent_is_rejected(max_concurrent: object) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrent for topic 'ticks'"):
        Router().handler("ticks", max_concurrent=max_concurrent)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "lease_ttl", [0, 0.05, -1, dt.timedelta(milliseconds=99), dt.timedelta(seconds=-5)]
)
def test_lease_ttl_below_the_minimum_is_rejected(lease_ttl: float | dt.timedelta) -> None:
    with pytest.raises(ConfigurationError, match="lease_ttl for topic 'ticks' must be at least"):
        Router().handler("ticks", lease_ttl=lease_ttl)


@pytest.mark.parametrize("lease_ttl", ["30", None, float("nan"), float("inf")])
def test_lease_ttl_that_is_not_a_finite_duration_is_rejected(lease_ttl: object) -> None:
    with pytest.raises(RedisTimersError, match="lease_ttl"):
        Router().handler("ticks", lease_ttl=lease_ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize("retry", [5, {"max_attempts": 5}, "RetryPolicy()"])
def test_retry_that_is_not_a_retry_policy_is_rejected(retry: object) -> None:
    with pytest.raises(ConfigurationError, match="retry for topic 'ticks' must be a RetryPolicy"):
        Router().handler("ticks", retry=retry)  # type: ignore[arg-type]


def test_non_callable_handler_is_rejected() -> None:
    router = Router()
    register = router.handler("ticks")
    with pytest.raises(ConfigurationError, match="must be callable"):
        register("not a function")  # type: ignore[type-var]
    assert len(router) == 0


@pytest.mark.parametrize(
    "func",
    [
        lambda: None,
        lambda **kwargs: None,
        lambda *, payload: None,
    ],
    ids=["no-parameters", "only-kwargs", "keyword-only-payload"],
)
def test_handler_without_a_positional_payload_parameter_is_rejected(
    func: Callable[..., Any],
) -> None:
    router = Router()
    with pytest.raises(ConfigurationError, match="cannot be called with the payload"):
        router.handler("ticks")(func)
    assert len(router) == 0


def test_failed_registration_leaves_the_topic_free() -> None:
    router = Router()
    with pytest.raises(ConfigurationError):
        router.handler("ticks")(lambda: None)
    router.handler("ticks")(lambda payload: None)
    assert router.topics == ["ticks"]


# -- handlers taking a Delivery -----------------------------------------------------------


def one(payload: Any) -> None:
    pass


def two(payload: Any, delivery: Delivery) -> None:
    pass


def two_with_default(payload: Any, delivery: Delivery | None = None) -> None:
    pass


def payload_and_keyword_only(payload: Any, *, delivery: Delivery | None = None) -> None:
    pass


def var_positional(*args: Any) -> None:
    pass


def payload_and_var_positional(payload: Any, *rest: Any) -> None:
    pass


def positional_only(payload: Any, delivery: Delivery, /) -> None:
    pass


def payload_and_kwargs(payload: Any, **kwargs: Any) -> None:
    pass


class Handlers:
    def one(self, payload: Any) -> None:
        pass

    def two(self, payload: Any, delivery: Delivery) -> None:
        pass

    @staticmethod
    def static_two(payload: Any, delivery: Delivery) -> None:
        pass

    @classmethod
    def class_one(cls, payload: Any) -> None:
        pass


class CallableOne:
    def __call__(self, payload: Any) -> None:
        pass


class CallableTwo:
    def __call__(self, payload: Any, delivery: Delivery) -> None:
        pass


def three(prefix: str, payload: Any, delivery: Delivery) -> None:
    pass


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (one, False),
        (two, True),
        (two_with_default, True),
        (payload_and_keyword_only, False),
        (var_positional, True),
        (payload_and_var_positional, True),
        (positional_only, True),
        (payload_and_kwargs, False),
        (lambda payload: None, False),
        (lambda payload, delivery: None, True),
        (Handlers().one, False),
        (Handlers().two, True),
        (Handlers.static_two, True),
        (Handlers.class_one, False),
        (CallableOne(), False),
        (CallableTwo(), True),
        (functools.partial(three, "p"), True),
        (functools.partial(two, delivery=None), False),
    ],
    ids=[
        "one", "two", "two-with-default", "keyword-only-delivery", "var-positional",
        "payload-and-var-positional", "positional-only", "payload-and-kwargs", "lambda-one",
        "lambda-two", "bound-method-one", "bound-method-two", "staticmethod-two",
        "classmethod-one", "callable-one", "callable-two", "partial-two-left",
        "partial-delivery-bound-by-keyword",
    ],
)
def test_takes_delivery_detects_a_second_positional_parameter(
    func: Callable[..., Any], expected: bool
) -> None:
    assert takes_delivery(func) is expected


def test_registered_spec_records_whether_the_handler_takes_a_delivery() -> None:
    router = Router()
    router.handler("one")(one)
    router.handler("two")(two)
    assert {spec.topic: spec.takes_delivery for spec in router} == {"one": False, "two": True}


@pytest.mark.parametrize("func", [dict, max, iter], ids=["dict", "max", "iter"])
def test_builtin_without_signature_gets_only_the_payload(func: Callable[..., Any]) -> None:
    assert takes_delivery(func) is False


def test_builtin_with_one_positional_parameter_gets_only_the_payload() -> None:
    assert takes_delivery(len) is False


# -- several routers --------------------------------------------------------------------


def test_merge_routers_joins_their_topics() -> None:
    first, second = Router(), Router()
    first.handler("a")(one)
    second.handler("b")(two)
    second.handler("c")(one)
    specs = merge_routers([first, second])
    assert list(specs) == ["a", "b", "c"]
    assert specs["b"].func is two


def test_merge_routers_of_nothing_is_empty() -> None:
    assert merge_routers([]) == {}


def test_same_topic_in_two_routers_is_rejected() -> None:
    first, second = Router(), Router()
    first.handler("invoices")(one)
    second.handler("invoices")(two)
    with pytest.raises(ConfigurationError, match="'invoices' has a handler in two routers"):
        merge_routers([first, second])


@pytest.mark.parametrize("router", [object(), "router", None, {"a": one}])
def test_something_that_is_not_a_router_is_rejected(router: object) -> None:
    with pytest.raises(ConfigurationError, match="routers must be Router objects"):
        merge_routers([Router(), router])  # type: ignore[list-item]


# -- handlers the threads could never run -------------------------------------------------


async def _async_handler(payload: object) -> None: ...


class _AsyncCallable:
    async def __call__(self, payload: object) -> None: ...


def _generator_handler(payload: object) -> Any:
    yield payload


async def _async_generator_handler(payload: object) -> Any:
    yield payload


@pytest.mark.parametrize(
    ("func", "words"),
    [
        (_async_handler, "is an async function"),
        (functools.partial(_async_handler), "is an async function"),
        (_AsyncCallable(), "is an async function"),
        (_generator_handler, "is a generator function"),
        (_async_generator_handler, "is a generator function"),
        (lambda payload, delivery, extra: None, "cannot be called with the payload"),
        (lambda payload, *, flag: None, "cannot be called with the payload"),
    ],
    ids=["async-def", "async-partial", "async-call", "generator", "async-generator",
         "three-arguments", "required-keyword"],
)
def test_a_handler_the_threads_could_never_run_is_refused_with_a_type_error(
    func: Callable[..., Any], words: str
) -> None:
    """An async handler used to be accepted: its coroutine was made, never awaited, and
    the timer counted as delivered."""
    router = Router()
    with pytest.raises(InvalidHandlerError, match=words) as caught:
        router.handler("ticks")(func)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ConfigurationError)
    assert "'ticks'" in str(caught.value)
    assert len(router) == 0


def test_async_handler_message_says_what_to_do_instead() -> None:
    with pytest.raises(InvalidHandlerError, match=r"plain def .*asyncio\.run"):
        Router().handler("ticks")(_async_handler)

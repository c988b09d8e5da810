"""TimerScheduler against the session's real Redis: scheduling, firing, inspecting, bad input
and connecting."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import redistimers
from redistimers import (
    ConfigurationError,
    Delivery,
    InvalidTimerError,
    PayloadTypeError,
    RedisUnavailableError,
    RetryPolicy,
    RetryTimer,
    Router,
    TimerInfo,
    TimerScheduler,
    TimerSpec,
)
from redistimers.testing import RedisServer

from .helpers import (
    UTC,
    InvoiceDue,
    Recorder,
    RecordingFactory,
    SchedulerFactory,
    dead_letters,
    running,
    server_now,
    timer_gone,
    wait_for,
)

# -- firing -----------------------------------------------------------------------------


def test_timers_fire_in_due_order_and_never_before_their_due_time(
    recording: RecordingFactory, redis_client: redis.Redis
) -> None:
    scheduler, handler = recording("ticks", handler={"max_concurrent": 1})
    delays_ms = {"c": 300, "a": 60, "e": 500, "b": 180, "d": 400}
    set_at: dict[str, dt.datetime] = {}
    for name, delay in delays_ms.items():
        set_at[name] = server_now(redis_client)
        scheduler.set_timer(
            "ticks", name, activate_in=dt.timedelta(milliseconds=delay), timer_id=name
        )
    scheduler.start()
    calls = handler.wait_calls(5)
    assert [c.payload for c in calls] == ["a", "b", "c", "d", "e"]
    for call in calls:
        assert call.delivery is not None
        name = call.payload
        earliest = set_at[name] + dt.timedelta(milliseconds=delays_ms[name])
        assert call.delivery.due_at >= earliest - dt.timedelta(milliseconds=1)
        assert call.server_now >= call.delivery.due_at, "fired early by the Redis clock"
        assert call.local_now >= call.delivery.due_at, "fired early by the local clock"
        assert call.server_now >= earliest
    due = [c.delivery.due_at for c in calls if c.delivery is not None]
    assert due == sorted(due)


def test_overdue_timers_fire_in_due_order(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks", max_concurrent=1)(handler)
    scheduler = make_scheduler(router)
    base = server_now(redis_client).replace(microsecond=0) - dt.timedelta(minutes=5)
    for name, offset in [("third", 3), ("first", 1), ("fourth", 4), ("second", 2)]:
        scheduler.set_timer("ticks", name, activate_at=base + dt.timedelta(seconds=offset))
    with scheduler:
        calls = handler.wait_calls(4)
    assert [c.payload for c in calls] == ["first", "second", "third", "fourth"]
    assert [c.delivery.due_at for c in calls if c.delivery] == [
        base + dt.timedelta(seconds=s) for s in (1, 2, 3, 4)
    ]


def test_timer_set_while_running_fires_without_waiting_for_the_poll_interval(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks")(handler)
    scheduler = make_scheduler(router, max_poll_interval=60)
    with scheduler:
        time.sleep(0.1)  # let the poller go to sleep on an empty topic
        started = time.monotonic()
        scheduler.set_timer("ticks", "now", activate_in=0)
        handler.wait_calls(1, timeout=5)
        assert time.monotonic() - started < 5


def test_timer_set_by_another_process_without_handlers_is_delivered_promptly(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("invoices", payload=InvoiceDue)(handler)
    worker = make_scheduler(router, max_poll_interval=60)
    web_app = make_scheduler()  # schedules only: no handlers, no thread
    with worker:
        time.sleep(0.1)  # let the poller go to sleep on an empty topic
        web_app.set_timer(
            "invoices",
            {"invoice_id": "INV-1", "amount_cents": 995},
            activate_in=dt.timedelta(milliseconds=50),
            timer_id="INV-1",
        )
        (call,) = handler.wait_calls(1, timeout=5)
    assert call.payload == InvoiceDue("INV-1", 995)


def test_cancelled_timer_never_fires(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks", max_concurrent=1)(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", "cancelled", activate_in=0.1, timer_id="x")
    scheduler.set_timer("ticks", "kept", activate_in=0.3, timer_id="y")
    assert scheduler.cancel_timer("ticks", "x") is True
    assert scheduler.cancel_timer("ticks", "x") is False
    assert scheduler.cancel_timer("ticks", "never-set") is False
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "y"))
    assert handler.payloads == ["kept"]
    assert scheduler.get_timer("ticks", "x") is None


def test_reset_replaces_payload_and_moves_the_timer_earlier(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks")(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", "old", activate_in=dt.timedelta(hours=1), timer_id="same")
    scheduler.set_timer("ticks", "new", activate_in=0.05, timer_id="same")
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "same"))
    assert handler.payloads == ["new"]


def test_reset_replaces_payload_and_moves_the_timer_later(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks", max_concurrent=1)(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", "old", activate_in=0.05, timer_id="same")
    before = server_now(redis_client)
    scheduler.set_timer("ticks", "new", activate_in=dt.timedelta(hours=1), timer_id="same")
    scheduler.set_timer("ticks", "sentinel", activate_in=0.3, timer_id="sentinel")
    with scheduler:
        handler.wait_calls(1)
        wait_for(timer_gone(scheduler, "ticks", "sentinel"))
    assert handler.payloads == ["sentinel"]
    info = scheduler.get_timer("ticks", "same")
    assert info is not None
    assert info.payload == "new"
    assert info.due_at >= before + dt.timedelta(hours=1) - dt.timedelta(milliseconds=1)


def test_reset_during_handler_survives_old_ack(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    def block_first_version(payload: Any, delivery: Delivery | None) -> None:
        if payload == "v1":
            assert release.wait(10)

    router = Router()
    handler = Recorder(redis_client, block_first_version)
    router.handler("ticks")(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", "v1", activate_in=0, timer_id="INV-1")
    with running(scheduler, release):
        handler.wait_calls(1)
        old = scheduler.get_timer("ticks", "INV-1")
        assert old is not None
        assert old.leased is True
        scheduler.set_timer("ticks", "v2", activate_in=0.3, timer_id="INV-1")
        release.set()  # the old version's handler returns and acks with its stale token
        calls = handler.wait_calls(2)
        wait_for(timer_gone(scheduler, "ticks", "INV-1"))
    assert [c.payload for c in calls] == ["v1", "v2"]
    assert calls[1].delivery is not None
    assert calls[1].delivery.attempt == 1  # the replaced timer started fresh


def test_handler_can_reschedule_its_own_timer(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """A handler that re-sets its own id (a home-made periodic timer) is not undone by
    its own ack: the next occurrence fires."""
    schedulers: list[TimerScheduler] = []

    def next_round(payload: Any, delivery: Delivery | None) -> None:
        assert delivery is not None
        if payload < 3:
            schedulers[0].set_timer(
                "rounds", payload + 1, activate_in=0.02, timer_id=delivery.timer_id
            )

    router = Router()
    handler = Recorder(redis_client, next_round)
    router.handler("rounds")(handler)
    scheduler = make_scheduler(router)
    schedulers.append(scheduler)
    scheduler.set_timer("rounds", 1, activate_in=0, timer_id="r")
    with scheduler:
        handler.wait_calls(3)
        wait_for(timer_gone(scheduler, "rounds", "r"))
    assert handler.payloads == [1, 2, 3]
    assert [c.delivery.attempt for c in handler.calls if c.delivery] == [1, 1, 1]


def test_cancel_during_handler_is_not_undone_by_its_outcome(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    def fail_after_release(payload: Any, delivery: Delivery | None) -> None:
        if payload == "x":
            assert release.wait(10)
            raise RetryTimer(0)

    router = Router()
    handler = Recorder(redis_client, fail_after_release)
    router.handler("ticks")(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    scheduler.set_timer("ticks", "sentinel", activate_in=0.3, timer_id="sentinel")
    with running(scheduler, release):
        handler.wait_calls(1)
        assert scheduler.cancel_timer("ticks", "x") is True
        release.set()  # its RetryTimer must not bring the cancelled timer back
        handler.wait_calls(2)
    assert sorted(handler.payloads) == ["sentinel", "x"]
    assert scheduler.get_timer("ticks", "x") is None
    assert redis_client.zscore("redistimers:{ticks}:due", "x") is None


# -- what handlers receive --------------------------------------------------------------


def test_set_timer_returns_the_given_id(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    assert scheduler.set_timer("ticks", 1, activate_in=60, timer_id="INV-1") == "INV-1"
    assert scheduler.get_timer("ticks", "INV-1") is not None


def test_set_timer_generates_distinct_ids_when_none_is_given(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    ids = [scheduler.set_timer("ticks", n, activate_in=60) for n in range(20)]
    assert len(set(ids)) == 20
    for n, timer_id in enumerate(ids):
        assert isinstance(timer_id, str)
        assert timer_id
        info = scheduler.get_timer("ticks", timer_id)
        assert info is not None
        assert info.payload == n


def test_headers_and_correlation_id_reach_the_handler_through_delivery(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("invoices", payload=InvoiceDue)(handler)
    scheduler = make_scheduler(router)
    at = server_now(redis_client) - dt.timedelta(seconds=1)
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)
    scheduler.set_timer(
        "invoices",
        InvoiceDue("INV-7", 1200),
        activate_at=at,
        timer_id="INV-7",
        headers={"tenant": "acme", "trace": "ünï"},
        correlation_id="req-42",
    )
    with scheduler:
        (call,) = handler.wait_calls(1)
    assert call.payload == InvoiceDue("INV-7", 1200)
    delivery = call.delivery
    assert isinstance(delivery, Delivery)
    assert delivery.topic == "invoices"
    assert delivery.timer_id == "INV-7"
    assert delivery.attempt == 1
    assert dict(delivery.headers) == {"tenant": "acme", "trace": "ünï"}
    assert delivery.correlation_id == "req-42"
    assert delivery.due_at == at
    assert delivery.due_at.utcoffset() == dt.timedelta(0)


def test_delivery_without_headers_has_empty_headers_and_no_correlation_id(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks")(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", [1, 2], activate_in=0)
    with scheduler:
        (call,) = handler.wait_calls(1)
    assert call.payload == [1, 2]
    assert call.delivery is not None
    assert dict(call.delivery.headers) == {}
    assert call.delivery.correlation_id is None


def test_handler_with_one_parameter_gets_only_the_payload(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    received: list[tuple[Any, ...]] = []
    router = Router()

    @router.handler("invoices", payload=InvoiceDue, retry=RetryPolicy(max_attempts=1))
    def on_invoice(invoice: InvoiceDue) -> None:
        received.append((invoice,))

    scheduler = make_scheduler(router)
    scheduler.set_timer("invoices", InvoiceDue("INV-1", 5), activate_in=0, timer_id="INV-1")
    with scheduler:
        wait_for(lambda: received)
        wait_for(timer_gone(scheduler, "invoices", "INV-1"))
    assert received == [(InvoiceDue("INV-1", 5),)]
    assert dead_letters(redis_client, "invoices") == {}


# -- get_timer --------------------------------------------------------------------------


def test_get_timer_describes_a_pending_timer(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(Recorder(redis_client))
    scheduler = make_scheduler(router)
    before = server_now(redis_client)
    scheduler.set_timer(
        "invoices",
        InvoiceDue("INV-1", 995),
        activate_in=dt.timedelta(minutes=30),
        timer_id="INV-1",
        headers={"tenant": "acme"},
        correlation_id="req-1",
    )
    after = server_now(redis_client)
    info = scheduler.get_timer("invoices", "INV-1")
    assert isinstance(info, TimerInfo)
    assert info.topic == "invoices"
    assert info.timer_id == "INV-1"
    assert info.payload == InvoiceDue("INV-1", 995)
    assert dict(info.headers) == {"tenant": "acme"}
    assert info.correlation_id == "req-1"
    assert info.attempts == 0
    assert info.leased is False
    slack = dt.timedelta(milliseconds=1)
    assert before + dt.timedelta(minutes=30) - slack <= info.due_at
    assert info.due_at <= after + dt.timedelta(minutes=30) + slack
    assert info.due_at.utcoffset() == dt.timedelta(0)
    # Due times round up to the millisecond and the server's now rounds down.
    assert dt.timedelta(minutes=29) < info.remaining <= dt.timedelta(minutes=30) + slack


def test_get_timer_of_an_unknown_id_is_none(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    assert scheduler.get_timer("invoices", "nope") is None
    scheduler.set_timer("invoices", 1, activate_in=60, timer_id="other")
    assert scheduler.get_timer("invoices", "nope") is None
    assert scheduler.get_timer("elsewhere", "other") is None


def test_get_timer_without_a_handler_gives_the_json_payload(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("invoices", InvoiceDue("INV-1", 995), activate_in=60, timer_id="INV-1")
    info = scheduler.get_timer("invoices", "INV-1")
    assert info is not None
    assert info.payload == {"invoice_id": "INV-1", "amount_cents": 995}


def test_get_timer_of_an_overdue_timer_has_no_time_remaining(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    at = dt.datetime(2020, 1, 1, tzinfo=UTC)
    scheduler.set_timer("ticks", 1, activate_at=at, timer_id="old")
    info = scheduler.get_timer("ticks", "old")
    assert info is not None
    assert info.due_at == at
    assert info.remaining == dt.timedelta(0)


def test_get_timer_of_a_payload_that_no_longer_decodes_gives_its_json(
    make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    typed = make_scheduler(router)
    make_scheduler().set_timer("invoices", {"old": "shape"}, activate_in=60, timer_id="x")
    info = typed.get_timer("invoices", "x")
    assert info is not None
    assert info.payload == {"old": "shape"}


def test_get_timer_shows_a_running_timer_as_leased_with_its_attempt(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, release: threading.Event
) -> None:
    router = Router()
    handler = Recorder(redis_client, lambda payload, delivery: release.wait(10) and None)
    router.handler("ticks", lease_ttl=20)(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("ticks", "x", activate_in=0, timer_id="x")
    with running(scheduler, release):
        handler.wait_calls(1)
        info = scheduler.get_timer("ticks", "x")
        release.set()
        wait_for(timer_gone(scheduler, "ticks", "x"))
    assert info is not None
    assert info.leased is True
    assert info.attempts == 1
    # While leased, due_at is when the lease runs out.
    assert dt.timedelta(seconds=10) < info.remaining <= dt.timedelta(seconds=20)


# -- bad input --------------------------------------------------------------------------

NAIVE = dt.datetime(2030, 1, 1)
AWARE = dt.datetime(2030, 1, 1, tzinfo=UTC)
GOOD = InvoiceDue("INV-1", 1)


@pytest.mark.parametrize(
    ("topic", "payload", "kwargs", "error"),
    [
        ("invoices", {"invoice_id": "INV-1", "amount_cents": 1}, {"activate_in": 5},
         PayloadTypeError),
        ("invoices", "INV-1", {"activate_in": 5}, PayloadTypeError),
        ("invoices", GOOD, {"activate_at": NAIVE}, InvalidTimerError),
        ("invoices", GOOD, {"activate_at": AWARE, "activate_in": 5}, InvalidTimerError),
        ("invoices", GOOD, {}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": -1}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": dt.timedelta(seconds=-1)}, InvalidTimerError),
        ("", GOOD, {"activate_in": 5}, InvalidTimerError),
        ("in{voices}", GOOD, {"activate_in": 5}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": 5, "timer_id": ""}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": 5, "timer_id": "x" * 257}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": 5, "headers": {"n": 1}}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": 5, "headers": {1: "n"}}, InvalidTimerError),
        ("invoices", GOOD, {"activate_in": 5, "correlation_id": 7}, InvalidTimerError),
        ("untyped", object(), {"activate_in": 5}, PayloadTypeError),
        ("untyped", {"n": float("nan")}, {"activate_in": 5}, PayloadTypeError),
    ],
    ids=[
        "dict-for-attrs-topic", "str-for-attrs-topic", "naive-activate-at", "both-times",
        "no-time", "negative-seconds", "negative-timedelta", "empty-topic", "braced-topic",
        "empty-id", "long-id", "header-value-int", "header-key-int", "correlation-int",
        "object-payload", "nan-payload",
    ],
)
def test_rejected_set_timer_writes_nothing_to_redis(
    make_scheduler: SchedulerFactory,
    redis_client: redis.Redis,
    topic: str,
    payload: Any,
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    scheduler = make_scheduler(router)
    with pytest.raises(error):
        scheduler.set_timer(topic, payload, **kwargs)
    assert redis_client.keys("*") == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activate_in": dt.timedelta(days=3_000_000)},
        {"activate_in": 1e20},
        {"activate_at": dt.datetime.max.replace(tzinfo=UTC)},
    ],
    ids=["3-million-days", "1e20-seconds", "datetime-max"],
)
def test_far_future_due_time_is_either_rejected_or_readable_by_get_timer(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis, kwargs: dict[str, Any]
) -> None:
    """A due time the library cannot turn back into a datetime must not be written."""
    scheduler = make_scheduler()
    try:
        scheduler.set_timer("ticks", 1, timer_id="far", **kwargs)
    except InvalidTimerError:
        assert redis_client.keys("*") == []
    else:
        info = scheduler.get_timer("ticks", "far")
        assert info is not None
        assert info.due_at > dt.datetime.now(UTC) + dt.timedelta(days=365 * 1000)


def test_payload_type_error_names_topic_and_type(make_scheduler: SchedulerFactory) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    scheduler = make_scheduler(router)
    with pytest.raises(TypeError) as info:
        scheduler.set_timer("invoices", {"invoice_id": "x"}, activate_in=5)
    assert isinstance(info.value, PayloadTypeError)
    assert "'invoices'" in str(info.value)
    assert "InvoiceDue" in str(info.value)


def test_rejected_reset_leaves_the_existing_timer_unchanged(
    make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    scheduler = make_scheduler(router)
    scheduler.set_timer("invoices", GOOD, activate_in=60, timer_id="INV-1")
    before = scheduler.get_timer("invoices", "INV-1")
    with pytest.raises(PayloadTypeError):
        scheduler.set_timer("invoices", {"bad": 1}, activate_in=1, timer_id="INV-1")
    after = scheduler.get_timer("invoices", "INV-1")
    assert before is not None
    assert after is not None
    assert (after.payload, after.due_at) == (GOOD, before.due_at)



# -- connecting -------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_from_url_does_not_connect_and_a_call_on_an_unreachable_port_names_it() -> None:
    """Like a redis-py client: an app boots while its Redis restarts."""
    port = _closed_port()
    scheduler = TimerScheduler.from_url(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        scheduler.stats("t")
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value, redis.exceptions.ConnectionError)
    assert scheduler.healthy  # a caller's error, not a worker's


def test_from_url_with_an_invalid_url_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL"):
        TimerScheduler.from_url("http://localhost:6379/0")


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("not a client",), {}, "client must be a redis.Redis"),
        ((None,), {}, "client must be a redis.Redis"),
        (("CLIENT", [object()]), {}, "routers must be Router objects"),
        (("CLIENT",), {"max_poll_interval": 0}, "max_poll_interval"),
        (("CLIENT",), {"retry": 3}, "retry must be a RetryPolicy"),
    ],
)
def test_scheduler_with_bad_settings_raises_configuration_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], match: str
) -> None:
    client = redis.Redis(port=_closed_port())
    args = tuple(client if a == "CLIENT" else a for a in args)
    with pytest.raises(ConfigurationError, match=match):
        TimerScheduler(*args, **kwargs)


def test_namespaces_keep_schedulers_apart(
    redis_client: redis.Redis, redis_url: str, make_scheduler: SchedulerFactory
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("ticks")(handler)
    default = make_scheduler(router)
    other = TimerScheduler.from_url(redis_url, namespace="otherapp")
    other.set_timer("ticks", "theirs", activate_in=0, timer_id="t")
    default.set_timer("ticks", "ours", activate_in=0.1, timer_id="o")
    assert set(redis_client.keys("*")) == {
        b"otherapp:topics", b"otherapp:{ticks}:due", b"otherapp:{ticks}:body",
        b"redistimers:topics", b"redistimers:{ticks}:due", b"redistimers:{ticks}:body",
    }
    assert redis_client.zscore("otherapp:{ticks}:due", "t") is not None
    with default:
        handler.wait_calls(1)
        wait_for(timer_gone(default, "ticks", "o"))
    assert handler.payloads == ["ours"]
    assert default.get_timer("ticks", "t") is None
    info = other.get_timer("ticks", "t")
    assert info is not None
    assert info.attempts == 0


def test_scheduler_works_with_a_decoding_client_and_leaves_its_settings_alone(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    client = redis_server.client(decode_responses=True)
    settings = dict(client.connection_pool.connection_kwargs)
    router = Router()
    handler = Recorder(redis_client)
    router.handler("invoices", payload=InvoiceDue)(handler)
    scheduler = TimerScheduler(client, routers=[router])
    try:
        scheduler.set_timer(
            "invoices", InvoiceDue("INV-1", 1), activate_in=60, timer_id="later",
            headers={"k": "v"},
        )
        info = scheduler.get_timer("invoices", "later")
        assert info is not None
        assert info.payload == InvoiceDue("INV-1", 1)
        assert dict(info.headers) == {"k": "v"}
        scheduler.set_timer(
            "invoices", InvoiceDue("INV-2", 2), activate_in=0, timer_id="now",
            headers={"k": "v"}, correlation_id="c",
        )
        with scheduler:
            (call,) = handler.wait_calls(1)
            wait_for(timer_gone(scheduler, "invoices", "now"))
        assert call.payload == InvoiceDue("INV-2", 2)
        assert call.delivery is not None
        assert call.delivery.timer_id == "now"
        assert dict(call.delivery.headers) == {"k": "v"}
        assert call.delivery.correlation_id == "c"
        scheduler.set_timer(
            "invoices", InvoiceDue("INV-3", 3), activate_at=dt.datetime(2020, 1, 1, tzinfo=UTC)
        )
        assert scheduler.run_pending() == 1
        assert scheduler.cancel_timer("invoices", "later") is True
        assert client.connection_pool.connection_kwargs == settings
        assert client.get_encoder().decode_responses is True
        client.set("plain", "value")
        assert client.get("plain") == "value"
    finally:
        scheduler.stop(timeout=5)
        client.close()


# -- bulk scheduling ----------------------------------------------------------------------


def test_set_timers_writes_many_timers_of_several_topics_and_returns_their_ids(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    specs = [
        TimerSpec("bulk-a" if i % 2 else "bulk-b", {"n": i}, activate_in=60, timer_id=f"t{i}")
        for i in range(2500)  # more than one script call per topic
    ]
    specs.append(TimerSpec("bulk-a", {"n": -1}, activate_in=60))  # a generated id
    ids = scheduler.set_timers(specs)
    assert ids[:2500] == [f"t{i}" for i in range(2500)]
    assert len(ids[2500]) == 22
    assert scheduler.stats("bulk-a").pending == 1251
    assert scheduler.stats("bulk-b").pending == 1250
    info = scheduler.get_timer("bulk-a", "t7")
    assert info is not None
    assert info.payload == {"n": 7}


def test_set_timers_checks_every_timer_before_writing_any(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    specs = [TimerSpec("bulk", i, activate_in=60) for i in range(10)]
    specs.insert(5, TimerSpec("bulk", 5, activate_at=dt.datetime(2030, 1, 1)))  # naive
    with pytest.raises(InvalidTimerError, match="timezone-aware"):
        scheduler.set_timers(specs)
    assert redis_client.keys("*") == []


def test_set_timers_replaces_timers_with_the_same_id_like_set_timer(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("bulk", "old", activate_in=60, timer_id="x")
    scheduler.set_timers([TimerSpec("bulk", "new", activate_in=120, timer_id="x")])
    info = scheduler.get_timer("bulk", "x")
    assert info is not None
    assert info.payload == "new"
    assert info.remaining > dt.timedelta(seconds=100)


def test_set_timers_wakes_a_running_worker_for_a_new_earliest_timer(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    handler = Recorder(redis_client)
    router.handler("bulk")(handler)
    scheduler = make_scheduler(router)
    scheduler.set_timer("bulk", "later", activate_in=3600)
    with scheduler:
        time.sleep(0.1)  # the poller now sleeps towards the hour-away timer
        scheduler.set_timers([TimerSpec("bulk", i, activate_in=0.05) for i in range(3)])
        handler.wait_calls(3, timeout=2.0)
    assert sorted(handler.payloads) == [0, 1, 2]


def test_set_timers_refuses_what_is_not_a_timer_spec(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    with pytest.raises(InvalidTimerError, match="TimerSpec"):
        scheduler.set_timers([("bulk", 1)])  # type: ignore[list-item]


def test_a_timer_written_as_the_readme_wire_format_says_is_delivered(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """Another language schedules by running schedule.lua as README's "Wire format" says."""
    router = Router()
    handler = Recorder(redis_client)
    router.handler("wire")(handler)
    scheduler = make_scheduler(router)
    ns = "redistimers"
    source = (Path(redistimers.__file__).parent / "lua" / "schedule.lua").read_text()
    keys = [f"{ns}:{{wire}}:{kind}" for kind in ("due", "body", "lease", "attempts", "dead",
                                                 "dead_body")]
    records = "\x1e".join([
        'w1\x1fin\x1f50\x1f{"v":1,"p":{"n":1},"h":{"k":"v"},"c":"c-1"}',
        'w2\x1fat\x1f1000.5\x1f{"v":1,"p":"long overdue"}',
    ])
    redis_client.eval(source, len(keys), *keys, f"{ns}:{{wire}}:wake", records)
    redis_client.sadd(f"{ns}:topics", "wire")
    assert scheduler.topics() == ["wire"]
    scheduler.start()
    calls = handler.wait_calls(2)
    assert [c.payload for c in calls] == ["long overdue", {"n": 1}]
    delivery = calls[1].delivery
    assert delivery is not None
    assert (delivery.timer_id, dict(delivery.headers), delivery.correlation_id) == (
        "w1", {"k": "v"}, "c-1"
    )


def test_from_url_with_a_malformed_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as caught:
        TimerScheduler.from_url("redis://user:hunter2@host:notaport/0")
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)

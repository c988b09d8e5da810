"""TimerScheduler refusing bad input (writing nothing), and connecting: URLs, settings, clients."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import redis

from redistimers import (
    ConfigurationError,
    InvalidTimerError,
    PayloadTypeError,
    RedisUnavailableError,
    Router,
    TimerScheduler,
)
from redistimers.testing import RedisServer

from .helpers import (
    UTC,
    InvoiceDue,
    Recorder,
    RecordingFactory,
    SchedulerFactory,
    closed_port,
    offline_client,
    timer_gone,
    wait_for,
)

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
    recording: RecordingFactory,
    redis_client: redis.Redis,
    topic: str,
    payload: Any,
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    scheduler, _ = recording("invoices", handler={"payload": InvoiceDue})
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


def test_payload_type_error_names_topic_and_type(recording: RecordingFactory) -> None:
    scheduler, _ = recording("invoices", handler={"payload": InvoiceDue})
    with pytest.raises(TypeError) as info:
        scheduler.set_timer("invoices", {"invoice_id": "x"}, activate_in=5)
    assert isinstance(info.value, PayloadTypeError)
    assert "'invoices'" in str(info.value)
    assert "InvoiceDue" in str(info.value)


def test_rejected_reset_leaves_the_existing_timer_unchanged(
    recording: RecordingFactory,
) -> None:
    scheduler, _ = recording("invoices", handler={"payload": InvoiceDue})
    scheduler.set_timer("invoices", GOOD, activate_in=60, timer_id="INV-1")
    before = scheduler.get_timer("invoices", "INV-1")
    with pytest.raises(PayloadTypeError):
        scheduler.set_timer("invoices", {"bad": 1}, activate_in=1, timer_id="INV-1")
    after = scheduler.get_timer("invoices", "INV-1")
    assert before is not None
    assert after is not None
    assert (after.payload, after.due_at) == (GOOD, before.due_at)


# -- connecting -------------------------------------------------------------------------


def test_from_url_does_not_connect_and_a_call_on_an_unreachable_port_names_it() -> None:
    """Like a redis-py client: an app boots while its Redis restarts."""
    port = closed_port()
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


def test_from_url_with_a_malformed_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as caught:
        TimerScheduler.from_url("redis://user:hunter2@host:notaport/0")
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


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
    client = offline_client()
    args = tuple(client if a == "CLIENT" else a for a in args)
    with pytest.raises(ConfigurationError, match=match):
        TimerScheduler(*args, **kwargs)


def test_namespaces_keep_schedulers_apart(
    redis_client: redis.Redis, redis_url: str, recording: RecordingFactory
) -> None:
    default, handler = recording("ticks")
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


"""Unit tests of redistimers.validation: every check of caller input, without Redis."""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from redistimers import (
    InvalidTimerError,
    PayloadTypeError,
    RedisTimersError,
    Router,
    TimerScheduler,
    defaults,
)
from redistimers.validation import (
    DueTime,
    check_correlation_id,
    check_due,
    check_headers,
    check_namespace,
    check_timer_id,
    check_topic,
    datetime_of_ms,
    epoch_micros,
    new_timer_id,
    seconds_of,
)

from .helpers import InvoiceDue, offline_client

UTC = dt.timezone.utc


# -- topics -----------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["invoices", "a", "orders.eu-west:1", "ünïcode topic", "x" * 200])
def test_valid_topics_are_returned_unchanged(topic: str) -> None:
    assert check_topic(topic) == topic


def test_empty_topic_is_rejected() -> None:
    with pytest.raises(InvalidTimerError, match="must not be empty"):
        check_topic("")


@pytest.mark.parametrize("topic", ["{invoices}", "in{voices", "invoices}", "a{b}c"])
def test_topic_with_braces_is_rejected(topic: str) -> None:
    with pytest.raises(InvalidTimerError, match="must not contain"):
        check_topic(topic)


def test_over_long_topic_is_rejected_with_its_length() -> None:
    topic = "t" * (defaults.MAX_TOPIC_LENGTH + 1)
    with pytest.raises(InvalidTimerError, match=str(defaults.MAX_TOPIC_LENGTH + 1)):
        check_topic(topic)


@pytest.mark.parametrize("topic", [None, 1, b"invoices", ["invoices"]])
def test_topic_that_is_not_a_str_is_rejected(topic: object) -> None:
    with pytest.raises(InvalidTimerError, match="topic must be a str"):
        check_topic(topic)


@pytest.mark.parametrize("topic", ["in\nvoices", "tab\there", "nul\x00"])
def test_topic_with_control_characters_is_rejected(topic: str) -> None:
    with pytest.raises(InvalidTimerError, match="control characters"):
        check_topic(topic)


def test_invalid_timer_error_is_a_value_error_and_a_library_error() -> None:
    with pytest.raises(ValueError) as info:  # noqa: PT011 - the base class is the point
        check_topic("")
    assert isinstance(info.value, RedisTimersError)


# -- namespaces -------------------------------------------------------------------------


def test_valid_namespace_is_returned_unchanged() -> None:
    assert check_namespace("myapp:timers") == "myapp:timers"


@pytest.mark.parametrize("namespace", ["", None, 3, "ns{x}", "{ns", "ns}"])
def test_bad_namespace_is_rejected(namespace: object) -> None:
    with pytest.raises(InvalidTimerError, match="namespace"):
        check_namespace(namespace)


# -- timer ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timer_id", ["INV-1", "x", "with space", "{braces-are-fine-in-ids}", "i" * 256]
)
def test_valid_timer_ids_are_returned_unchanged(timer_id: str) -> None:
    assert check_timer_id(timer_id) == timer_id


def test_empty_timer_id_is_rejected() -> None:
    with pytest.raises(InvalidTimerError, match="must not be empty"):
        check_timer_id("")


def test_over_long_timer_id_is_rejected_with_the_limit() -> None:
    with pytest.raises(InvalidTimerError, match=str(defaults.MAX_TIMER_ID_LENGTH)):
        check_timer_id("i" * (defaults.MAX_TIMER_ID_LENGTH + 1))


@pytest.mark.parametrize("timer_id", [1, b"id", None, ("a",)])
def test_timer_id_that_is_not_a_str_is_rejected(timer_id: object) -> None:
    with pytest.raises(InvalidTimerError, match="timer_id must be a str"):
        check_timer_id(timer_id)


def test_generated_timer_ids_are_valid_url_safe_and_distinct() -> None:
    ids = {new_timer_id() for _ in range(1000)}
    assert len(ids) == 1000
    for timer_id in ids:
        assert check_timer_id(timer_id) == timer_id
        assert len(timer_id) == 22
        assert all(c.isalnum() or c in "-_" for c in timer_id)


# -- headers and correlation ids ----------------------------------------------------------


def test_missing_headers_are_an_empty_dict() -> None:
    assert check_headers(None) == {}


def test_headers_mapping_is_copied_into_a_plain_dict() -> None:
    source: dict[str, str] = {"a": "1"}
    for headers in (source, OrderedDict(source), MappingProxyType(source)):
        checked = check_headers(headers)
        assert checked == {"a": "1"}
        assert type(checked) is dict
        assert checked is not headers


@pytest.mark.parametrize(
    "headers",
    [
        {"a": 1},
        {1: "a"},
        {"a": None},
        {"a": b"bytes"},
        {b"a": "b"},
        {"ok": "ok", "bad": ["list"]},
    ],
)
def test_headers_not_mapping_str_to_str_are_rejected(headers: dict[Any, Any]) -> None:
    with pytest.raises(InvalidTimerError, match="headers must map str to str"):
        check_headers(headers)


@pytest.mark.parametrize("headers", [[("a", "b")], "a=b", 42])
def test_headers_that_are_not_a_mapping_are_rejected(headers: object) -> None:
    with pytest.raises(InvalidTimerError, match="headers must be a mapping"):
        check_headers(headers)


@pytest.mark.parametrize("correlation_id", [None, "", "req-42"])
def test_correlation_id_may_be_a_str_or_none(correlation_id: str | None) -> None:
    assert check_correlation_id(correlation_id) == correlation_id


@pytest.mark.parametrize("correlation_id", [42, b"req", ["x"]])
def test_correlation_id_of_another_type_is_rejected(correlation_id: object) -> None:
    with pytest.raises(InvalidTimerError, match="correlation_id"):
        check_correlation_id(correlation_id)


# -- durations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(dt.timedelta(minutes=2), 120.0), (3, 3.0), (0.25, 0.25), (dt.timedelta(0), 0.0)],
)
def test_seconds_of_accepts_timedeltas_and_numbers(value: object, seconds: float) -> None:
    assert seconds_of(value, "x") == seconds


@pytest.mark.parametrize("value", ["5", None, True, [1]])
def test_seconds_of_rejects_other_types_naming_the_argument(value: object) -> None:
    with pytest.raises(InvalidTimerError, match=r"lease_ttl must be a datetime\.timedelta"):
        seconds_of(value, "lease_ttl")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_seconds_of_rejects_non_finite_numbers(value: float) -> None:
    with pytest.raises(InvalidTimerError, match="must be finite"):
        seconds_of(value, "activate_in")


# -- due times --------------------------------------------------------------------------


def test_activate_in_gives_a_delay_in_milliseconds() -> None:
    assert check_due(dt.timedelta(seconds=1.5), None) == DueTime(delay_ms=1500)
    assert check_due(2, None) == DueTime(delay_ms=2000)
    assert check_due(0, None) == DueTime(delay_ms=0)


@pytest.mark.parametrize(
    ("activate_in", "delay_ms"),
    [
        (0.3, 300),  # 0.3 * 1e6 is 300000.00000000006 in floating point: still 300 ms
        (0.0000001, 0.001),
        (0.0011, 1.1),
        (dt.timedelta(microseconds=1), 0.001),
        (dt.timedelta(milliseconds=7), 7),
        (dt.timedelta(milliseconds=7, microseconds=1), 7.001),
    ],
)
def test_activate_in_is_rounded_up_to_the_microsecond(
    activate_in: object, delay_ms: float
) -> None:
    assert check_due(activate_in, None).delay_ms == delay_ms


def test_activate_at_gives_epoch_milliseconds_to_the_microsecond() -> None:
    moment = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert check_due(None, moment) == DueTime(at_ms=1893553445678.901)


def test_activate_at_in_another_timezone_is_the_same_instant() -> None:
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    moment = dt.datetime(2030, 1, 2, 8, 34, 5, tzinfo=tz)
    assert check_due(None, moment).at_ms == check_due(
        None, dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    ).at_ms


def test_activate_at_keeps_microseconds_so_a_timer_is_never_due_early() -> None:
    moment = dt.datetime(2030, 1, 1, tzinfo=UTC)
    base = check_due(None, moment).at_ms
    assert base is not None
    later = check_due(None, moment + dt.timedelta(microseconds=1)).at_ms
    assert later is not None
    assert later > base
    assert datetime_of_ms(later) == moment + dt.timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("activate_in", "activate_at"),
    [
        (dt.timedelta(days=3_000_000), None),
        (1e20, None),
        (None, dt.datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_due_time_past_year_9999_is_rejected(activate_in: object, activate_at: object) -> None:
    with pytest.raises(InvalidTimerError, match="9999"):
        check_due(activate_in, activate_at)


def test_naive_activate_at_is_rejected() -> None:
    with pytest.raises(InvalidTimerError, match="timezone-aware"):
        check_due(None, dt.datetime(2030, 1, 1))


def test_activate_at_whose_tzinfo_has_no_offset_is_rejected() -> None:
    class NoOffset(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
            return None

    with pytest.raises(InvalidTimerError, match="timezone-aware"):
        check_due(None, dt.datetime(2030, 1, 1, tzinfo=NoOffset()))


@pytest.mark.parametrize(
    "activate_at", [dt.date(2030, 1, 1), "2030-01-01T00:00:00Z", 1893456000, 1893456000.0]
)
def test_activate_at_that_is_not_a_datetime_is_rejected(activate_at: object) -> None:
    with pytest.raises(InvalidTimerError, match=r"activate_at must be a datetime\.datetime"):
        check_due(None, activate_at)


def test_both_activate_in_and_activate_at_are_rejected() -> None:
    with pytest.raises(InvalidTimerError, match="exactly one"):
        check_due(dt.timedelta(seconds=1), dt.datetime(2030, 1, 1, tzinfo=UTC))


def test_neither_activate_in_nor_activate_at_is_rejected() -> None:
    with pytest.raises(InvalidTimerError, match="exactly one"):
        check_due(None, None)


@pytest.mark.parametrize("activate_in", [-1, -0.001, dt.timedelta(microseconds=-1)])
def test_negative_activate_in_is_rejected(activate_in: object) -> None:
    with pytest.raises(InvalidTimerError, match="must not be negative"):
        check_due(activate_in, None)


@pytest.mark.parametrize("activate_in", [math.nan, math.inf, "10", True])
def test_activate_in_that_is_not_a_finite_duration_is_rejected(activate_in: object) -> None:
    with pytest.raises(InvalidTimerError, match="activate_in"):
        check_due(activate_in, None)


def test_past_activate_at_is_accepted_and_means_due_now() -> None:
    moment = dt.datetime(2001, 1, 1, tzinfo=UTC)
    assert check_due(None, moment).at_ms == 978307200000


# -- epoch milliseconds -----------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(1970, 1, 1, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 12, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(9999, 12, 30, tzinfo=UTC),
    ],
)
def test_epoch_micros_and_datetime_of_ms_round_trip_to_the_microsecond(
    moment: dt.datetime,
) -> None:
    assert datetime_of_ms(epoch_micros(moment) / 1000) == moment


def test_datetime_of_ms_is_aware_utc() -> None:
    when = datetime_of_ms(1_700_000_000_123)
    assert when.tzinfo is not None
    assert when.utcoffset() == dt.timedelta(0)
    assert when == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


# -- set_timer checks everything before it touches Redis ----------------------------------
#
# The scheduler below talks to a port where nothing listens: if set_timer tried Redis
# before rejecting its arguments, it would raise RedisUnavailableError instead.


@pytest.fixture
def offline_scheduler() -> TimerScheduler:
    router = Router()

    @router.handler("invoices", payload=InvoiceDue)
    def on_invoice(invoice: InvoiceDue) -> None:
        raise AssertionError("never delivered")

    return TimerScheduler(offline_client(), routers=[router])


SOON = dt.timedelta(seconds=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activate_at": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"activate_in": SOON, "activate_at": dt.datetime(2030, 1, 1, tzinfo=UTC)}, "exactly one"),
        ({}, "exactly one"),
        ({"activate_in": -5}, "must not be negative"),
        ({"activate_in": SOON, "timer_id": ""}, "timer_id must not be empty"),
        ({"activate_in": SOON, "timer_id": "x" * 257}, "timer_id is 257 characters"),
        ({"activate_in": SOON, "headers": {"a": 1}}, "headers must map str to str"),
        ({"activate_in": SOON, "correlation_id": 5}, "correlation_id"),
    ],
)
def test_set_timer_rejects_bad_arguments_before_touching_redis(
    offline_scheduler: TimerScheduler, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidTimerError, match=match):
        offline_scheduler.set_timer("invoices", InvoiceDue("INV-1", 1), **kwargs)


@pytest.mark.parametrize("topic", ["", "in{voices}", "{x"])
def test_set_timer_rejects_bad_topic_before_touching_redis(
    offline_scheduler: TimerScheduler, topic: str
) -> None:
    with pytest.raises(InvalidTimerError):
        offline_scheduler.set_timer(topic, {"a": 1}, activate_in=SOON)


@pytest.mark.parametrize("payload", [{"invoice_id": "INV-1", "amount_cents": 1}, "INV-1", None])
def test_set_timer_rejects_payload_of_wrong_type_before_touching_redis(
    offline_scheduler: TimerScheduler, payload: object
) -> None:
    with pytest.raises(PayloadTypeError, match=r"'invoices'.*InvoiceDue") as info:
        offline_scheduler.set_timer("invoices", payload, activate_in=SOON)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("method", ["cancel_timer", "get_timer"])
@pytest.mark.parametrize(("topic", "timer_id"), [("", "id"), ("a{b}", "id"), ("t", ""), ("t", 7)])
def test_cancel_and_get_reject_bad_topic_or_id_before_touching_redis(
    offline_scheduler: TimerScheduler, method: str, topic: str, timer_id: Any
) -> None:
    with pytest.raises(InvalidTimerError):
        getattr(offline_scheduler, method)(topic, timer_id)


# -- strings a str can hold but UTF-8 cannot encode (lone surrogates) ----------------------

SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timer_id": f"id{SURROGATE}"}, "timer_id 'id.ud800' holds a lone surrogate"),
        ({"headers": {f"k{SURROGATE}": "v"}}, "header name .* holds a lone surrogate"),
        ({"headers": {"k": SURROGATE}}, "header 'k' .* holds a lone surrogate"),
        ({"correlation_id": f"c{SURROGATE}"}, "correlation_id .* holds a lone surrogate"),
    ],
)
def test_set_timer_refuses_fields_with_a_lone_surrogate_before_touching_redis(
    offline_scheduler: TimerScheduler, kwargs: dict[str, Any], match: str
) -> None:
    """Not a raw UnicodeEncodeError from redis-py, halfway through a write."""
    with pytest.raises(InvalidTimerError, match=match):
        offline_scheduler.set_timer("other", {"a": 1}, activate_in=SOON, **kwargs)


@pytest.mark.parametrize(
    "payload", [SURROGATE, {"text": f"ok {SURROGATE}"}, [1, {"deep": [SURROGATE]}],
                {f"key{SURROGATE}": 1}],
)
def test_set_timer_refuses_a_payload_with_a_lone_surrogate_before_touching_redis(
    offline_scheduler: TimerScheduler, payload: object
) -> None:
    with pytest.raises(PayloadTypeError, match="'other' holds a string with a lone surrogate"):
        offline_scheduler.set_timer("other", payload, activate_in=SOON)


def test_a_typed_payload_with_a_lone_surrogate_is_refused_too(
    offline_scheduler: TimerScheduler,
) -> None:
    with pytest.raises(PayloadTypeError, match="lone surrogate"):
        offline_scheduler.set_timer("invoices", InvoiceDue(SURROGATE, 1), activate_in=SOON)


@pytest.mark.parametrize("topic", [SURROGATE, f"a{SURROGATE}b"])
def test_a_topic_with_a_lone_surrogate_is_refused(
    offline_scheduler: TimerScheduler, topic: str
) -> None:
    with pytest.raises(InvalidTimerError, match=r"topic .* holds a lone surrogate"):
        offline_scheduler.set_timer(topic, 1, activate_in=SOON)


def test_set_timers_refuses_a_lone_surrogate_anywhere_before_writing_any(
    offline_scheduler: TimerScheduler,
) -> None:
    """The scheduler cannot reach Redis: refusing the batch must happen before any write."""
    from redistimers import TimerSpec

    specs = [TimerSpec("other", {"n": n}, activate_in=SOON) for n in range(15_000)]
    specs[14_000] = TimerSpec("other", {"n": SURROGATE}, activate_in=SOON)
    with pytest.raises(PayloadTypeError, match="lone surrogate"):
        offline_scheduler.set_timers(specs)


def test_non_ascii_text_is_not_taken_for_a_surrogate(
    offline_scheduler: TimerScheduler,
) -> None:
    assert check_topic("ünï 🎉") == "ünï 🎉"
    assert check_headers({"é": "🎉"}) == {"é": "🎉"}
    assert check_correlation_id("🎉") == "🎉"


# -- payload size ----------------------------------------------------------------------------


def test_a_payload_over_the_schedulers_limit_is_refused_before_touching_redis() -> None:
    from redistimers import PayloadTooLargeError, TimerSpec

    client = offline_client()
    small = TimerScheduler(client, max_payload_bytes=100)
    with pytest.raises(PayloadTooLargeError, match=r"'t' is 2\d\d bytes .* limit is 100") as e:
        small.set_timer("t", "x" * 200, activate_in=SOON)
    assert isinstance(e.value, ValueError)
    with pytest.raises(PayloadTooLargeError):
        small.set_timer("t", "é" * 60, activate_in=SOON)  # 120 bytes as UTF-8, 60 characters
    with pytest.raises(PayloadTooLargeError):
        small.set_timers([TimerSpec("t", 1, activate_in=SOON), TimerSpec("t", "y" * 99,
                                                                         activate_in=SOON)])


def test_the_default_payload_limit_is_one_mebibyte() -> None:
    from redistimers import PayloadTooLargeError

    client = offline_client()
    scheduler = TimerScheduler(client)
    assert scheduler.max_payload_bytes == 1024 * 1024 == defaults.MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadTooLargeError, match="1,048,576"):
        scheduler.set_timer("t", "x" * (1024 * 1024), activate_in=SOON)


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "1"])
def test_a_bad_payload_limit_is_a_configuration_error(limit: object) -> None:
    from redistimers import ConfigurationError

    client = offline_client()
    with pytest.raises(ConfigurationError, match="max_payload_bytes"):
        TimerScheduler(client, max_payload_bytes=limit)  # type: ignore[arg-type]

"""Checks of everything a caller passes in, done before anything is written to Redis."""

from __future__ import annotations

import binascii
import datetime as dt
import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import defaults
from .errors import InvalidTimerError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

#: The latest due time a timer may have: a datetime must still be able to show it.
LATEST_DUE = dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc)


class DueTime(NamedTuple):
    """When a timer is due: at an absolute epoch time, or after a delay from Redis's now.

    Milliseconds with a fraction, to the microsecond. (A tuple: bulk scheduling makes
    a hundred thousand a second.)
    """

    at_ms: float | None = None
    delay_ms: float | None = None


def lone_surrogate(text: str) -> str | None:
    """The first character of `text` that UTF-8 cannot encode (a lone surrogate, such as
    "\\ud800" from a bad decode or a JSON escape), or None; a str can hold one."""
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def check_utf8(value: str, what: str) -> str:
    """`value`, refused when it cannot be sent to Redis (a lone surrogate)."""
    bad = lone_surrogate(value)
    if bad is not None:
        raise InvalidTimerError(
            f"{what} {_shown(value)} holds a lone surrogate ({bad!r}), which cannot be "
            "encoded as UTF-8"
        )
    return value


def _shown(value: str) -> str:
    """`value` for an error message: its repr, shortened when long."""
    return repr(value) if len(value) <= 60 else repr(value[:40]) + "..."


def check_topic(topic: object) -> str:
    """A topic is a non-empty string without braces (they delimit the key's hash tag)."""
    if not isinstance(topic, str):
        raise InvalidTimerError(f"topic must be a str, got {type(topic).__name__}")
    if not topic:
        raise InvalidTimerError("topic must not be empty")
    check_utf8(topic, "topic")
    if "{" in topic or "}" in topic:
        raise InvalidTimerError(f"topic {topic!r} must not contain '{{' or '}}'")
    if len(topic) > defaults.MAX_TOPIC_LENGTH:
        raise InvalidTimerError(
            f"topic {topic[:40]!r}... is {len(topic)} characters long; "
            f"the limit is {defaults.MAX_TOPIC_LENGTH}"
        )
    if not topic.isprintable():
        raise InvalidTimerError(f"topic {topic!r} must not contain control characters")
    return topic


def check_namespace(namespace: object) -> str:
    """A namespace is a non-empty string without braces, prefixing every key."""
    if not isinstance(namespace, str) or not namespace:
        raise InvalidTimerError(f"namespace must be a non-empty str, got {namespace!r}")
    if "{" in namespace or "}" in namespace:
        raise InvalidTimerError(f"namespace {namespace!r} must not contain '{{' or '}}'")
    return check_utf8(namespace, "namespace")


def check_timer_id(timer_id: object) -> str:
    """A timer id is a non-empty string of at most MAX_TIMER_ID_LENGTH characters."""
    if not isinstance(timer_id, str):
        raise InvalidTimerError(f"timer_id must be a str, got {type(timer_id).__name__}")
    if not timer_id:
        raise InvalidTimerError("timer_id must not be empty")
    check_utf8(timer_id, "timer_id")
    if not timer_id.isprintable():
        raise InvalidTimerError(f"timer_id {timer_id!r} must not contain control characters")
    if len(timer_id) > defaults.MAX_TIMER_ID_LENGTH:
        raise InvalidTimerError(
            f"timer_id is {len(timer_id)} characters long; "
            f"the limit is {defaults.MAX_TIMER_ID_LENGTH}"
        )
    return timer_id


def new_timer_id() -> str:
    """A random id: 128 bits, 22 URL-safe characters (secrets.token_urlsafe(16), in
    three C calls instead of six Python frames: bulk scheduling makes many)."""
    return binascii.b2a_base64(os.urandom(16), newline=False)[:22].translate(_URL_SAFE).decode()


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def check_headers(headers: object) -> dict[str, str]:
    """Headers are a mapping of str to str."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidTimerError(
            f"headers must be a mapping of str to str, got {type(headers).__name__}"
        )
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidTimerError(
                f"headers must map str to str; {key!r}: {value!r} is "
                f"{type(key).__name__} -> {type(value).__name__}"
            )
        check_utf8(key, "header name")
        check_utf8(value, f"header {key!r}")
    return dict(headers)


def check_correlation_id(correlation_id: object) -> str | None:
    """A correlation id is a str or None."""
    if correlation_id is None:
        return None
    if isinstance(correlation_id, str):
        return check_utf8(correlation_id, "correlation_id")
    raise InvalidTimerError(
        f"correlation_id must be a str or None, got {type(correlation_id).__name__}"
    )


def seconds_of(value: object, name: str) -> float:
    """A duration given as a timedelta or a number of seconds, as finite seconds."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidTimerError(
            f"{name} must be a datetime.timedelta or a number of seconds, "
            f"got {type(value).__name__}"
        )
    if not math.isfinite(seconds):
        raise InvalidTimerError(f"{name} must be finite, got {value!r}")
    return seconds


def check_due(activate_in: Any, activate_at: Any) -> DueTime:
    """Exactly one of activate_in (>= 0) and activate_at (timezone-aware) gives the due time.

    Times are rounded up to the millisecond, so a timer never fires before it was asked to.
    """
    if (activate_in is None) == (activate_at is None):
        raise InvalidTimerError(
            "give exactly one of activate_in (a timedelta) or activate_at (an aware datetime)"
        )
    if activate_at is not None:
        if not isinstance(activate_at, dt.datetime):
            raise InvalidTimerError(
                f"activate_at must be a datetime.datetime, got {type(activate_at).__name__}"
            )
        if activate_at.tzinfo is None or activate_at.utcoffset() is None:
            raise InvalidTimerError(
                f"activate_at must be timezone-aware (naive datetime {activate_at.isoformat()} "
                "is ambiguous); use e.g. datetime.now(timezone.utc) or attach a tzinfo"
            )
        if activate_at > LATEST_DUE:
            raise InvalidTimerError(
                f"activate_at {activate_at.isoformat()} is later than {LATEST_DUE.isoformat()}"
            )
        return DueTime(at_ms=epoch_micros(activate_at) / 1000)
    # The usual case first, exact to the microsecond.
    if type(activate_in) is dt.timedelta and 0 <= activate_in.days < _FAR_DAYS:
        micros = (activate_in.days * 86_400 + activate_in.seconds) * 1_000_000
        return DueTime(delay_ms=(micros + activate_in.microseconds) / 1000)
    seconds = seconds_of(activate_in, "activate_in")
    if seconds < 0:
        raise InvalidTimerError(f"activate_in must not be negative, got {activate_in!r}")
    if seconds > 1e8 and (  # about three years: only then can it reach past LATEST_DUE
        seconds > (LATEST_DUE - dt.datetime.now(dt.timezone.utc)).total_seconds()
    ):
        raise InvalidTimerError(
            f"activate_in {activate_in!r} reaches past {LATEST_DUE.isoformat()}"
        )
    # Rounded up to the microsecond, so that the timer is never due before it was asked.
    return DueTime(delay_ms=math.ceil(round(seconds * 1_000_000, 3)) / 1000)


#: Delays shorter than this many days cannot reach past LATEST_DUE (checked the long way).
_FAR_DAYS = 1_000


def epoch_micros(moment: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def datetime_of_ms(epoch_ms: float) -> dt.datetime:
    """The aware UTC datetime of milliseconds since the epoch (to the microsecond)."""
    return EPOCH + dt.timedelta(microseconds=round(epoch_ms * 1000))

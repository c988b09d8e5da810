"""Reading and writing the HTTP admin API's JSON: rendering timers, reading request bodies
and query strings field by field (each error a 400 naming its field), and the bearer token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import flask

from ..codec import EnvelopeError, converter, structure_payload
from ..durations import parse_duration
from ..errors import ConfigurationError, InvalidTimerError
from ..models import DeadTimer, TimerInfo, TopicStats
from ..periodic import Period, check_period
from ..scheduler import TimerScheduler
from ..validation import check_due

#: Most timers or dead letters one page lists.
MAX_PAGE = 1000
REALM = 'Bearer realm="redistimers"'
Json = dict[str, Any]


class ApiError(Exception):
    """A request the API refuses: its status, a message and the field at fault."""

    def __init__(
        self, status: int, message: str, field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.headers = dict(headers or {})


def respond(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> flask.Response:
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return flask.Response(text, status, headers=dict(headers or {}),
                          mimetype="application/json")


def error_response(
    status: int, message: str, field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> flask.Response:
    return respond({"error": message, "field": field}, status, headers)


# -- rendering ----------------------------------------------------------------------------


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z: 2030-01-01T09:00:00.000000Z."""
    utc = moment.astimezone(dt.timezone.utc)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def timer_json(info: TimerInfo) -> Json:
    """A pending timer as the API shows it."""
    body: Json = {
        "topic": info.topic,
        "id": info.timer_id,
        "due_at": iso(info.due_at),
        "remaining_s": round(info.remaining.total_seconds(), 6),
        "attempts": info.attempts,
        "leased": info.leased,
        "payload": converter.unstructure(info.payload),
        "headers": dict(info.headers),
        "correlation_id": info.correlation_id,
    }
    if info.every is not None:
        body["every_s"] = info.every.total_seconds()
    if info.cron is not None:
        body["cron"], body["tz"] = info.cron, info.tz
    return body


def dead_json(dead: DeadTimer) -> Json:
    """A dead-lettered timer as the API shows it."""
    return {
        "topic": dead.topic,
        "id": dead.timer_id,
        "payload": dead.payload,
        "error": dead.error,
        "reason": dead.reason,
        "error_type": dead.error_type,
        "traceback": dead.traceback,
        "attempts": dead.attempts,
        "died_at": iso(dead.died_at),
        "headers": dict(dead.headers),
        "correlation_id": dead.correlation_id,
    }


def stats_json(stats: TopicStats) -> Json:
    lag = stats.oldest_due_lag
    return {
        "topic": stats.topic,
        "pending": stats.pending,
        "due": stats.due,
        "leased": stats.leased,
        "dead": stats.dead,
        "oldest_due_lag_s": None if lag is None else round(lag.total_seconds(), 6),
    }


# -- reading requests ---------------------------------------------------------------------


def field_value(field: str, check: Callable[[Any], Any], value: Any) -> Any:
    """`check(value)`, with its InvalidTimerError turned into a 400 naming `field`."""
    try:
        return check(value)
    except (InvalidTimerError, OverflowError) as exc:
        raise ApiError(400, f"{field}: {exc}", field) from exc


def duration(field: str, value: object) -> dt.timedelta:
    """A duration from JSON: "90s", "1h30m", "250ms" or a number of seconds."""
    if isinstance(value, str):
        return field_value(field, parse_duration, value)  # type: ignore[no-any-return]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(400, f"{field} must be a duration like \"30s\" or a number of seconds",
                       field)
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"{field} must be a finite number of seconds >= 0", field)
    return field_value(field, lambda seconds: dt.timedelta(seconds=seconds), value)  # type: ignore[no-any-return]


def instant(field: str, value: object) -> dt.datetime:
    """An aware datetime from ISO 8601 with a UTC offset or Z."""
    example = "like 2030-01-01T09:00:00Z or 2030-01-01T10:00:00+01:00"
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be an ISO 8601 time with a UTC offset, {example}",
                       field)
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{field} {value!r} is not ISO 8601, {example}", field) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ApiError(400, f"{field} {value!r} needs a UTC offset or Z, {example}", field)
    return moment


def due_args(body: Mapping[str, Any], required: bool) -> dict[str, Any]:
    """activate_in / activate_at from "in" / "at" (null as if absent), checked as set_timer
    will."""
    delay_value, at_value = body.get("in"), body.get("at")
    if delay_value is not None and at_value is not None:
        raise ApiError(400, 'give either "in" or "at", not both', "at")
    if delay_value is not None:
        delay = duration("in", delay_value)
        field_value("in", lambda d: check_due(d, None), delay)
        return {"activate_in": delay}
    if at_value is not None:
        moment = instant("at", at_value)
        field_value("at", lambda m: check_due(None, m), moment)
        return {"activate_at": moment}
    if required:
        raise ApiError(400, 'give "in" (a delay like "30s") or "at" (an ISO 8601 time)', "in")
    return {}


def period_args(body: Mapping[str, Any]) -> tuple[dict[str, Any], Period | None]:
    """every / cron / tz (null as if absent), each error naming its own field."""
    every, cron, tz = body.get("every"), body.get("cron"), body.get("tz")
    if every is not None and cron is not None:
        raise ApiError(400, 'give at most one of "every" and "cron"', "cron")
    if tz is not None and cron is None:
        raise ApiError(400, '"tz" applies to "cron" timers only', "tz")
    if every is not None:
        delta = duration("every", every)
        return {"every": delta}, field_value("every", lambda d: check_period(d, None, None), delta)
    if cron is not None:
        field_value("cron", lambda c: check_period(None, c, None), cron)
        if tz is not None and not isinstance(tz, str):
            raise ApiError(400, "tz must be an IANA time zone name like \"Europe/Berlin\"", "tz")
        period = field_value("tz", lambda z: check_period(None, cron, z), tz)
        return {"cron": cron, "tz": tz}, period
    return {}, None


def typed_payload(scheduler: TimerScheduler, topic: str, raw: Any) -> Any:
    """The JSON payload in the topic's type, when this process has a typed handler for it
    (set_timer then checks it as it would any payload)."""
    payload_type = scheduler.payload_type(topic)
    if payload_type is None:
        return raw
    if isinstance(payload_type, type) and (
        payload_type in (int, float, str, bool) or isinstance(raw, payload_type)
    ):
        return raw  # set_timer refuses a wrong primitive; cattrs would coerce it
    try:
        return structure_payload(raw, payload_type)
    except EnvelopeError as exc:
        raise ApiError(400, f"payload for topic {topic!r}: {exc}", "payload") from exc


def json_body(max_bytes: int, allowed: Iterable[str]) -> Json:
    """The request's JSON object, within `max_bytes`, with only `allowed` fields."""
    request = flask.request
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    chunks, size = [], 0
    while size <= max_bytes:
        try:
            chunk = request.stream.read(max_bytes + 1 - size)
        except OSError as exc:  # a broken chunked encoding, a client gone
            raise ApiError(400, f"the body could not be read: {exc}") from exc
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > max_bytes:
        raise ApiError(413, f"the body is larger than {max_bytes} bytes")

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        body = json.loads(b"".join(chunks).decode("utf-8"), parse_constant=refuse)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    allowed = tuple(allowed)
    for name in body:
        if name not in allowed:
            raise ApiError(400, f"unknown field {name!r}; expected {', '.join(allowed)}", name)
    return body


def query(allowed: Iterable[str]) -> Mapping[str, str]:
    args = flask.request.args
    allowed = tuple(allowed)
    for name in args:
        if name not in allowed:
            raise ApiError(400, f"unknown query parameter {name!r}; expected "
                                f"{', '.join(allowed) or 'none'}", name)
    return args


def int_param(
    args: Mapping[str, str], name: str, default: int, minimum: int, maximum: int = 10**9
) -> int:
    text = args.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= maximum:
        raise ApiError(400, f"{name} must be a whole number from {minimum} to {maximum}", name)
    return int(text)


def token_digest(token: object) -> bytes | None:
    """SHA-256 of the configured token: requests' tokens are compared by digest, in
    constant time, so that neither the content nor the length of the token leaks."""
    if token is None:
        return None
    if not isinstance(token, str) or not token or any(
        c.isspace() or not c.isprintable() for c in token
    ):
        raise ConfigurationError(
            "the API token must be a non-empty str without spaces or control characters"
        )
    return hashlib.sha256(token.encode()).digest()


def authenticate(expected: bytes) -> None:
    """Refuse a request unless its `Authorization: Bearer <token>` has the SHA-256 digest
    `expected` (compared in constant time)."""
    scheme, _, presented = flask.request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "this API needs an 'Authorization: Bearer <token>' header",
                       headers={"WWW-Authenticate": REALM})
    try:
        # WSGI gives header bytes as latin-1 text: encode back to the bytes sent.
        sent = presented.encode("latin-1")
    except UnicodeEncodeError:
        sent = b""
    if not hmac.compare_digest(hashlib.sha256(sent).digest(), expected):
        raise ApiError(401, "the bearer token is not valid",
                       headers={"WWW-Authenticate": REALM + ', error="invalid_token"'})

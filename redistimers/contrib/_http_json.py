"""Reading and answering the HTTP admin API's requests: bodies and query strings, each
error a 400 naming its field, through the input adapter (redistimers.inputs) that the
command line shares; JSON answers; the bearer token. What the answers hold is
redistimers.jsonforms, the command line's vocabulary too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import flask

from ..errors import ConfigurationError, InvalidTimerError, PayloadTypeError
from ..inputs import InputError, read_json, topic_payload
from ..scheduler import TimerScheduler

#: Most timers or dead letters one page lists.
MAX_PAGE = 1000
REALM = 'Bearer realm="redistimers"'
Json = dict[str, Any]
T = TypeVar("T")


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


# -- reading requests ---------------------------------------------------------------------

#: The body's name of each set_timer argument, for errors naming the field at fault.
FIELDS = {
    "activate_in": "in", "activate_at": "at", "timer_id": "id", "headers": "headers",
    "correlation_id": "correlation_id", "every": "every", "cron": "cron", "tz": "tz",
}


def field_value(field: str, check: Callable[[Any], T], value: Any) -> T:
    """`check(value)`, with its InvalidTimerError turned into a 400 naming `field`."""
    try:
        return check(value)
    except InvalidTimerError as exc:
        raise ApiError(400, f"{field}: {exc}", field) from exc


def adapted(read: Callable[[], T]) -> T:
    """`read()` of the input adapter, its InputError a 400 naming the body's field."""
    try:
        return read()
    except InputError as exc:
        field = FIELDS.get(exc.field, exc.field)
        raise ApiError(400, f"{field}: {exc}", field) from exc


def due_fields(body: Mapping[str, Any], required: bool) -> tuple[Any, Any]:
    """The body's "in" and "at" (null as if absent): one of them, or neither when not
    `required` (a periodic timer's first time)."""
    delay, moment = body.get("in"), body.get("at")
    if delay is not None and moment is not None:
        raise ApiError(400, 'give either "in" or "at", not both', "at")
    if required and delay is None and moment is None:
        raise ApiError(400, 'give "in" (a delay like "30s") or "at" (an ISO 8601 time)', "in")
    return delay, moment


def typed_payload(scheduler: TimerScheduler, topic: str, raw: Any) -> Any:
    """The JSON payload in the topic's type, by the input adapter's rule; a 400 naming
    "payload" when it does not fit."""
    try:
        return topic_payload(scheduler, topic, raw)
    except PayloadTypeError as exc:
        raise ApiError(400, str(exc), "payload") from exc


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

    try:
        body = read_json(b"".join(chunks).decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    except InvalidTimerError as exc:
        raise ApiError(400, f"the body is {exc}") from None
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

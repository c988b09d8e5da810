"""The webhook a timer carries, WebhookPayload, checked when made; the headers that name the
delivery; and `shown`, a URL fit for logs."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ...models import Delivery
from .errors import InvalidWebhookError

#: Methods a webhook may use.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
#: Headers a payload may not set: http.client writes them, or they identify the delivery.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
RESERVED_PREFIX = "x-redistimers-"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def check_url(instance: object, attribute: object, url: Any) -> None:
    if not isinstance(url, str):
        raise InvalidWebhookError(f"webhook url must be a str, got {type(url).__name__}")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise InvalidWebhookError(
            f"webhook url {url!r} must be ASCII without spaces (punycode and percent-encode it)"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhookError(f"webhook url {url!r} must be http:// or https://")
    if not parts.hostname:
        raise InvalidWebhookError(f"webhook url {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookError(f"webhook url {shown(url)!r} must not carry credentials")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise InvalidWebhookError(f"webhook url {url!r}: {exc}") from exc


def _upper(method: object) -> str:
    if not isinstance(method, str):
        raise InvalidWebhookError(f"webhook method must be a str, got {type(method).__name__}")
    return method.upper()


def _check_method(instance: object, attribute: object, method: str) -> None:
    if method not in METHODS:
        raise InvalidWebhookError(
            f"webhook method {method!r} is not one of {', '.join(sorted(METHODS))}"
        )


def _frozen_headers(headers: object) -> Mapping[str, str]:
    if not isinstance(headers, Mapping):
        raise InvalidWebhookError(f"webhook headers must be a mapping, got {headers!r}")
    return MappingProxyType(dict(headers))


def _check_headers(instance: object, attribute: object, headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise InvalidWebhookError(f"webhook header name {name!r} is not a valid token")
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIX):
            raise InvalidWebhookError(f"webhook header {name!r} is set by the library")
        if not isinstance(value, str) or not value.isascii() or any(
            (c < " " and c != "\t") or c == "\x7f" for c in value
        ):
            raise InvalidWebhookError(
                f"webhook header {name!r} must be printable ASCII, got {value!r}"
            )


@attrs.frozen
class WebhookPayload:
    """A webhook to send: `body` (any JSON value; None for no body) goes to `url` as
    application/json with `method` and the extra `headers`. Checked when made, so a bad
    one fails at `set_timer` (and, written by other means, dead-letters as undecodable)."""

    url: str = attrs.field(validator=check_url)
    body: Any
    method: str = attrs.field(default="POST", converter=_upper, validator=_check_method)
    headers: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_headers, validator=_check_headers
    )


def shown(url: str) -> str:
    """`url` fit for logs and dead letters: without credentials, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed url>"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def delivery_headers(delivery: Delivery) -> dict[str, str]:
    """The headers that tell the receiver which delivery this is (an idempotency key:
    topic, timer id and due time; the attempt counts up on every retry)."""
    headers = {
        "X-Redistimers-Topic": delivery.topic,
        "X-Redistimers-Timer-Id": delivery.timer_id,
        "X-Redistimers-Attempt": str(delivery.attempt),
        "X-Redistimers-Due-At": delivery.due_at.isoformat(timespec="milliseconds"),
    }
    if delivery.correlation_id is not None:
        headers["X-Redistimers-Correlation-Id"] = delivery.correlation_id
    return {name: _header_value(value) for name, value in headers.items()}


def _header_value(value: str) -> str:
    """Printable ASCII as it is; anything else percent-encoded as UTF-8."""
    if value.isascii() and value.isprintable():
        return value
    return urllib.parse.quote(value, safe="")

"""The webhook a timer carries, WebhookPayload, checked when made; the headers that name the
delivery, its Idempotency-Key among them; and `shown`, a URL fit for logs."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
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

#: Longest idempotency key a payload may carry: Stripe's limit of 255, less the ".<epoch
#: ms>" a periodic timer's occurrence adds (a key names, it holds nothing).
MAX_IDEMPOTENCY_KEY = 240

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
#: What an RFC 8941 string holds without escapes: printable ASCII but '"' and '\'.
_KEY = re.compile(r'[ !#-\[\]-~]+\Z')


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


def new_idempotency_key() -> str:
    """A fresh idempotency key: 128 random bits as 22 URL-safe characters."""
    return secrets.token_urlsafe(16)


def _check_key(instance: object, attribute: object, key: object) -> None:
    if key is None:
        return
    if not isinstance(key, str) or len(key) > MAX_IDEMPOTENCY_KEY or not _KEY.match(key):
        raise InvalidWebhookError(
            f"webhook idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII "
            f"characters without '\"' or '\\' (or None), got {key!r}"
        )


@attrs.frozen
class WebhookPayload:
    """A webhook to send: `body` (any JSON value; None for no body) goes to `url` as
    application/json with `method` and the extra `headers`. Checked when made, so a bad
    one fails at `set_timer` (and, written by other means, dead-letters as undecodable).

    `idempotency_key`, sent as the Idempotency-Key header of every attempt, is new for
    each payload made (so a timer set again is a new webhook) unless given; a periodic
    timer's occurrences each add their time to it (`idempotency_key()`). None sends a key
    of each delivery's own instead.
    """

    url: str = attrs.field(validator=check_url)
    body: Any
    method: str = attrs.field(default="POST", converter=_upper, validator=_check_method)
    headers: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_headers, validator=_check_headers
    )
    idempotency_key: str | None = attrs.field(
        kw_only=True, factory=new_idempotency_key, validator=_check_key
    )


def shown(url: str) -> str:
    """`url` fit for logs and dead letters: without credentials, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed url>"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def idempotency_key(webhook: WebhookPayload, delivery: Delivery) -> str:
    """The key a receiver deduplicates `webhook` on: the payload's own, the same for every
    attempt, and for a periodic timer followed by the occurrence's time in epoch ms (the
    same for that occurrence's retries, new for the next occurrence). Without one (None),
    a key of this delivery alone, from its topic, timer id and occurrence (or due) time."""
    occurrence = delivery.occurrence_at
    if webhook.idempotency_key is not None:
        if occurrence is None:
            return webhook.idempotency_key
        return f"{webhook.idempotency_key}.{round(occurrence.timestamp() * 1000)}"
    moment = occurrence or delivery.due_at
    name = f"{delivery.topic}\x1f{delivery.timer_id}\x1f{moment.isoformat()}"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def delivery_headers(
    delivery: Delivery, webhook: WebhookPayload | None = None
) -> dict[str, str]:
    """The headers that tell the receiver which delivery this is (the attempt counts up on
    every retry, and the due time is the retry's), with `webhook`'s Idempotency-Key (an
    RFC 8941 string) unless its own headers set one."""
    headers = {
        "X-Redistimers-Topic": delivery.topic,
        "X-Redistimers-Timer-Id": delivery.timer_id,
        "X-Redistimers-Attempt": str(delivery.attempt),
        "X-Redistimers-Due-At": delivery.due_at.isoformat(timespec="milliseconds"),
    }
    if delivery.correlation_id is not None:
        headers["X-Redistimers-Correlation-Id"] = delivery.correlation_id
    headers = {name: _header_value(value) for name, value in headers.items()}
    if webhook is not None and not any(
        name.lower() == "idempotency-key" for name in webhook.headers
    ):
        headers["Idempotency-Key"] = f'"{idempotency_key(webhook, delivery)}"'
    return headers


def _header_value(value: str) -> str:
    """Printable ASCII as it is; anything else percent-encoded as UTF-8."""
    if value.isascii() and value.isprintable():
        return value
    return urllib.parse.quote(value, safe="")

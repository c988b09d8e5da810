"""Webhook timers: at the due time, send the timer's payload as JSON to a URL.

    webhooks = Webhooks(["hooks.example.com", "*.partner.example"])
    webhooks.register(router, retry=RetryPolicy(max_attempts=8))     # topic "webhooks"
    scheduler.set_timer("webhooks", WebhookPayload("https://hooks.example.com/paid", {"id": 7}),
                        activate_in=dt.timedelta(hours=1))

Every attempt carries an Idempotency-Key header, the payload's `idempotency_key`: new for
each WebhookPayload made, so receivers can tell a retry from a timer set again.

HTTP is spoken by the standard library (http.client): no extra dependency. A worker sends
only to hosts on its allow-list and, unless `allow_private`, only to public addresses: it
resolves the host, refuses loopback, private, link-local, reserved and other non-global
addresses, and connects to the very address it checked, so a DNS answer that changes in
between (DNS rebinding) cannot send it elsewhere. Redirects are never followed, proxies
never used, and a response body is read only up to `max_response_bytes`.

The package, a module per job: `payload` (WebhookPayload and its checks), `addresses` (the
allow-list and the public-address check), `client` (one HTTP exchange), `response` (what
the receiver answered), `webhooks` (the Webhooks handler, and the check of a scheduled URL
against its allow-list) and `errors`; every public name is here. Imports run one way:
webhooks, then client and addresses, then payload, errors, then response.
"""

from __future__ import annotations

from .addresses import is_public_address
from .errors import (
    InvalidWebhookError,
    WebhookConnectionError,
    WebhookError,
    WebhookFailed,
    WebhookRefused,
    WebhookRetryAfter,
    WebhookTimeout,
)
from .payload import (
    MAX_IDEMPOTENCY_KEY,
    METHODS,
    RESERVED_HEADERS,
    RESERVED_PREFIX,
    WebhookPayload,
    delivery_headers,
    idempotency_key,
    new_idempotency_key,
    shown,
)
from .response import WebhookResponse, parse_retry_after
from .webhooks import (
    ERROR_BODY_CHARS,
    MAX_RESPONSE_BYTES,
    MAX_RETRY_AFTER,
    TIMEOUT,
    USER_AGENT,
    Webhooks,
)

__all__ = [
    "ERROR_BODY_CHARS",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_RESPONSE_BYTES",
    "MAX_RETRY_AFTER",
    "METHODS",
    "RESERVED_HEADERS",
    "RESERVED_PREFIX",
    "TIMEOUT",
    "USER_AGENT",
    "InvalidWebhookError",
    "WebhookConnectionError",
    "WebhookError",
    "WebhookFailed",
    "WebhookPayload",
    "WebhookRefused",
    "WebhookResponse",
    "WebhookRetryAfter",
    "WebhookTimeout",
    "Webhooks",
    "delivery_headers",
    "idempotency_key",
    "is_public_address",
    "new_idempotency_key",
    "parse_retry_after",
    "shown",
]

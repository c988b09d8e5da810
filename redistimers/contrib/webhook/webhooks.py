"""Webhooks, the topic handler that sends webhook timers: its settings (allow-list, limits),
the checks before sending, and how an answer becomes the timer's outcome."""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from ... import __version__
from ...codec import converter
from ...errors import ConfigurationError, InvalidTimerError
from ...models import Delivery
from ...router import Router
from .addresses import AllowList, is_ip, is_public_address, normal_host, resolve
from .client import endpoint, exchange
from .errors import InvalidWebhookError, WebhookFailed, WebhookRefused, WebhookRetryAfter
from .payload import WebhookPayload, check_url, delivery_headers, shown
from .response import WebhookResponse, parse_retry_after

#: Seconds one request may take in all, from connecting to the last byte read: a receiver
#: that hangs or trickles must not hold a handler slot for long.
TIMEOUT = 10.0
#: Longest wait a Retry-After may ask for, in seconds: the default RetryPolicy's longest
#: backoff, so that a receiver cannot park a timer for days.
MAX_RETRY_AFTER = 600.0
#: Most bytes read of a (non-2xx) response body: plenty for an error message, and bounded
#: against receivers that stream without end.
MAX_RESPONSE_BYTES = 64 * 1024
#: Characters of a response body quoted in an error, and so in a dead letter.
ERROR_BODY_CHARS = 300
USER_AGENT = f"redistimers/{__version__} (webhook)"


class Webhooks:
    """Sends webhook timers, to hosts of `allowed_hosts` only.

    An entry is a host name or IP address that must match exactly, `*.example.com` for
    any subdomain of example.com (not example.com itself), or `*` for any host. Unless
    `allow_private`, the host must also resolve to public addresses only. `timeout`
    bounds each request from connecting to the end (DNS resolution keeps the system
    resolver's own timeouts); a Retry-After waits at most `max_retry_after` seconds.
    """

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        *,
        timeout: float = TIMEOUT,
        allow_private: bool = False,
        user_agent: str = USER_AGENT,
        max_retry_after: float = MAX_RETRY_AFTER,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allowed = AllowList(allowed_hosts)
        if not timeout > 0 or not max_retry_after >= 0 or not max_response_bytes >= 0:
            raise ConfigurationError(
                "timeout must be > 0, max_retry_after and max_response_bytes >= 0"
            )
        self.timeout = float(timeout)
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.max_retry_after = float(max_retry_after)
        self.max_response_bytes = max_response_bytes
        self._ssl_context = ssl_context or ssl.create_default_context()

    def register(self, router: Router, topic: str = "webhooks", **handler_options: Any) -> None:
        """Make this the handler of `topic` in `router`, for WebhookPayload timers, whose
        URLs a process with `router` then checks when they are scheduled (`check_payload`);
        `handler_options` (max_concurrent, lease_ttl, retry) go to `router.handler`."""
        router.handler(
            topic, payload=WebhookPayload, payload_check=self.check_payload, **handler_options
        )(self.handler)

    def check_payload(self, payload: object) -> None:
        """The topic's payload check: raise InvalidTimerError, before anything is written,
        for a webhook `check` refuses (delivery would only dead-letter it)."""
        if not isinstance(payload, WebhookPayload):
            return  # not this check's to judge: the topic's type check refuses it
        try:
            self.check(payload)
        except WebhookRefused as exc:
            raise InvalidTimerError(f"webhook refused: {exc}") from None

    def check(self, webhook: WebhookPayload | str) -> None:
        """Raise WebhookRefused unless this worker may send to the URL, as far as can be
        told without DNS: for checks when scheduling. Delivery checks again, and resolves."""
        url = webhook.url if isinstance(webhook, WebhookPayload) else webhook
        try:
            check_url(None, None, url)
        except InvalidWebhookError as exc:
            raise WebhookRefused(str(exc)) from exc
        host = normal_host(urllib.parse.urlsplit(url).hostname or "")
        if not self._allowed.allows(host):
            raise WebhookRefused(
                f"host {host!r} of {shown(url)} is not in the allow-list {self._allowed}"
            )
        if is_ip(host) and not self.allow_private and not is_public_address(host):
            raise WebhookRefused(f"{shown(url)} is not a public address")

    def send(
        self, webhook: WebhookPayload, headers: Mapping[str, str] | None = None
    ) -> WebhookResponse:
        """Send `webhook` (plus `headers`) and return the answer, whatever its status.

        Raises WebhookRefused when the URL is not allowed, WebhookTimeout or
        WebhookConnectionError when no complete answer came.
        """
        self.check(webhook)
        url = webhook.url
        host, port = endpoint(url)
        addresses = resolve(url, host, port, self.allow_private)
        request_headers = {"User-Agent": self.user_agent, "Connection": "close"}
        body = None
        if webhook.body is not None:
            body = json.dumps(webhook.body, separators=(",", ":"), ensure_ascii=False).encode()
            request_headers["Content-Type"] = "application/json"
        request_headers.update(webhook.headers)
        request_headers.update(headers or {})
        return exchange(
            webhook.method, url, addresses, body, request_headers,
            timeout=self.timeout, max_response_bytes=self.max_response_bytes,
            ssl_context=self._ssl_context,
        )

    def handler(self, webhook: WebhookPayload, delivery: Delivery) -> None:
        """The topic handler: send, and turn the answer into the timer's outcome (2xx:
        delivered; 429/503 with Retry-After: again after it; other statuses and no answer:
        raise, so the topic's RetryPolicy and then dead letters apply)."""
        if not isinstance(webhook, WebhookPayload):  # registered without payload=
            try:
                webhook = converter.structure(webhook, WebhookPayload)
            except Exception as exc:
                raise WebhookRefused(f"not a webhook payload: {exc}") from exc
        # A refusal (WebhookRefused) goes up as it is: the timer's dead-lettering logs it.
        response = self.send(webhook, delivery_headers(delivery, webhook))
        if response.ok:
            return
        message = f"HTTP {response.status} {response.reason} from {webhook.method} " + shown(
            webhook.url
        )
        if 300 <= response.status < 400 and "location" in response.headers:
            location = urllib.parse.urljoin(webhook.url, response.headers["location"])
            message += f" (redirect to {shown(location)}, not followed)"
        if response.status in (429, 503):
            delay = parse_retry_after(response.headers.get("retry-after"))
            if delay is not None:
                delay = min(delay, self.max_retry_after)
                raise WebhookRetryAfter(f"{message} (Retry-After {delay:g}s)", response, delay)
        excerpt = response.body[:ERROR_BODY_CHARS * 4].decode(errors="replace")
        excerpt = " ".join(excerpt.split())[:ERROR_BODY_CHARS]
        raise WebhookFailed(f"{message}: {excerpt}" if excerpt else message, response)

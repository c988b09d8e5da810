"""Webhook timers: at the due time, send the timer's payload as JSON to a URL.

    webhooks = Webhooks(["hooks.example.com", "*.partner.example"])
    webhooks.register(router, retry=RetryPolicy(max_attempts=8))     # topic "webhooks"
    scheduler.set_timer("webhooks", WebhookPayload("https://hooks.example.com/paid", {"id": 7}),
                        activate_in=dt.timedelta(hours=1))

HTTP is spoken by the standard library (http.client): no extra dependency. A worker sends
only to hosts on its allow-list and, unless `allow_private`, only to public addresses: it
resolves the host, refuses loopback, private, link-local, reserved and other non-global
addresses, and connects to the very address it checked, so a DNS answer that changes in
between (DNS rebinding) cannot send it elsewhere. Redirects are never followed, proxies
never used, and a response body is read only up to `max_response_bytes`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .. import __version__
from ..codec import converter
from ..errors import ConfigurationError, RedisTimersError, RejectTimer, RetryTimer
from ..models import Delivery
from ..router import Router

log = logging.getLogger("redistimers.webhook")

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
#: Methods a webhook may use.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
USER_AGENT = f"redistimers/{__version__} (webhook)"
#: Headers a payload may not set: http.client writes them, or they identify the delivery.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
RESERVED_PREFIX = "x-redistimers-"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class WebhookError(RedisTimersError):
    """Root of the webhook errors."""


class InvalidWebhookError(WebhookError, ValueError):
    """A WebhookPayload that can never be sent: bad URL, scheme, method or headers."""


class WebhookRefused(WebhookError, RejectTimer):
    """This worker will not send to the URL: host not allowed, or not a public address.

    Permanent: no request is made, and the timer goes to the dead letters at once (a
    RejectTimer with dead_letter=True), where someone can see it.
    """

    def __init__(self, message: str) -> None:
        RejectTimer.__init__(self, message, dead_letter=True)


class WebhookFailed(WebhookError):
    """The receiver answered with a status other than 2xx; retried per the topic's policy."""

    def __init__(self, message: str, response: WebhookResponse) -> None:
        Exception.__init__(self, message)  # not super(): RetryTimer may follow in the MRO
        self.response = response
        self.status = response.status


class WebhookRetryAfter(WebhookFailed, RetryTimer):
    """A 429 or 503 with a Retry-After: delivered again after that many seconds (capped)."""

    def __init__(self, message: str, response: WebhookResponse, delay: float) -> None:
        RetryTimer.__init__(self, delay)
        WebhookFailed.__init__(self, message, response)


class WebhookConnectionError(WebhookError):
    """No answer: the host did not resolve, refused the connection, or broke it."""


class WebhookTimeout(WebhookConnectionError):
    """No complete answer within the timeout."""


# -- the payload ----------------------------------------------------------------------------


def _check_url(instance: object, attribute: object, url: Any) -> None:
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

    url: str = attrs.field(validator=_check_url)
    body: Any
    method: str = attrs.field(default="POST", converter=_upper, validator=_check_method)
    headers: Mapping[str, str] = attrs.field(
        factory=dict, converter=_frozen_headers, validator=_check_headers
    )


@attrs.frozen
class WebhookResponse:
    """What the receiver answered. `body` holds the first bytes of a non-2xx response's
    body; a 2xx response's body is not read (the status is all a timer needs)."""

    status: int
    reason: str
    #: Response headers, names in lower case (repeated ones joined with ", ").
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def shown(url: str) -> str:
    """`url` fit for logs and dead letters: without credentials, query or fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed url>"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None
    when it is missing or malformed."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private,
    link-local, reserved, multicast, unspecified and shared (CGNAT) ones, also when an
    IPv6 address embeds such an IPv4 one (mapped, 6to4, NAT64)."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(str(embedded))
        if ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
        or ip.is_multicast or ip.is_unspecified
    )


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


# -- sending ----------------------------------------------------------------------------------


def _connect(addresses: list[tuple[int, Any]], deadline: float) -> socket.socket:
    """A TCP connection to the first of `addresses` that answers before `deadline`."""
    error: OSError = TimeoutError("no time left to connect")
    for family, sockaddr in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("connect timed out")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to addresses already checked, never to a fresh DNS answer (the
    Host header and, for TLS, SNI and the certificate check still use the host name)."""

    def __init__(self, host: str, port: int, addresses: list[tuple[int, Any]], deadline: float,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=max(0.001, deadline - time.monotonic()))
        self._addresses, self._deadline, self._tls = addresses, deadline, tls
        if tls is not None:
            self.default_port = 443  # the Host header names no port when it is the default

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._deadline)
        if time.monotonic() >= self._deadline:
            raise TimeoutError("connected too late")
        if self._tls is not None:
            self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


@contextlib.contextmanager
def _deadline(seconds: float, connection: http.client.HTTPConnection) -> Iterator[threading.Event]:
    """Shut the connection's socket down once the whole exchange has taken `seconds`: a
    socket timeout bounds each read, not a receiver that trickles a byte at a time. The
    event yielded tells whether that happened."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        if connection.sock is not None:  # the plain socket's shutdown wakes a TLS read too
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)

    timer = threading.Timer(seconds, expire)
    timer.name, timer.daemon = "webhook-deadline", True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


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
        if isinstance(allowed_hosts, str):
            raise ConfigurationError("allowed_hosts must be a list of hosts, not one str")
        self._any_host = False
        self._hosts: set[str] = set()
        self._suffixes: list[str] = []
        for entry in allowed_hosts:
            self._allow(entry)
        if not (self._any_host or self._hosts or self._suffixes):
            raise ConfigurationError("allowed_hosts is empty: no webhook could ever be sent")
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

    def _allow(self, entry: object) -> None:
        if not isinstance(entry, str):
            raise ConfigurationError(f"allowed host {entry!r} must be a str")
        host = _normal_host(entry.strip())
        if host == "*":
            self._any_host = True
            return
        name = host.removeprefix("*.")
        if not name or (any(c in name for c in "*/@:?#") and not _is_ip(name)):
            raise ConfigurationError(
                f"allowed host {entry!r} must be a host name, an IP address, '*.domain' or '*'"
            )
        if host.startswith("*."):
            self._suffixes.append("." + name)
        else:
            self._hosts.add(name)

    def register(self, router: Router, topic: str = "webhooks", **handler_options: Any) -> None:
        """Make this the handler of `topic` in `router`, for WebhookPayload timers;
        `handler_options` (max_concurrent, lease_ttl, retry) go to `router.handler`."""
        router.handler(topic, payload=WebhookPayload, **handler_options)(self.handler)

    def check(self, webhook: WebhookPayload | str) -> None:
        """Raise WebhookRefused unless this worker may send to the URL, as far as can be
        told without DNS: for checks when scheduling. Delivery checks again, and resolves."""
        url = webhook.url if isinstance(webhook, WebhookPayload) else webhook
        try:
            _check_url(None, None, url)
        except InvalidWebhookError as exc:
            raise WebhookRefused(str(exc)) from exc
        host = _normal_host(urllib.parse.urlsplit(url).hostname or "")
        if not (
            self._any_host or host in self._hosts or any(host.endswith(s) for s in self._suffixes)
        ):
            raise WebhookRefused(f"host {host!r} of {shown(url)} is not in the allow-list")
        if _is_ip(host) and not self.allow_private and not is_public_address(host):
            raise WebhookRefused(f"{shown(url)} is not a public address")

    def _resolve(self, url: str, host: str, port: int) -> list[tuple[int, Any]]:
        """The addresses to connect to, each checked."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:  # gaierror: may be a passing DNS failure, so retried
            raise WebhookConnectionError(f"cannot resolve {host!r} of {shown(url)}: {exc}") from exc
        addresses: list[tuple[int, Any]] = [(info[0], info[4]) for info in infos]
        if not self.allow_private:
            for _, sockaddr in addresses:
                if not is_public_address(str(sockaddr[0])):
                    raise WebhookRefused(
                        f"host {host!r} of {shown(url)} resolves to {sockaddr[0]}, "
                        "which is not a public address"
                    )
        return addresses

    def send(
        self, webhook: WebhookPayload, headers: Mapping[str, str] | None = None
    ) -> WebhookResponse:
        """Send `webhook` (plus `headers`) and return the answer, whatever its status.

        Raises WebhookRefused when the URL is not allowed, WebhookTimeout or
        WebhookConnectionError when no complete answer came.
        """
        self.check(webhook)
        url = webhook.url
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        addresses = self._resolve(url, host, port)
        deadline = time.monotonic() + self.timeout
        connection = _PinnedConnection(
            host, port, addresses, deadline, self._ssl_context if tls else None
        )
        request_headers = {"User-Agent": self.user_agent, "Connection": "close"}
        body = None
        if webhook.body is not None:
            body = json.dumps(webhook.body, separators=(",", ":"), ensure_ascii=False).encode()
            request_headers["Content-Type"] = "application/json"
        request_headers.update(webhook.headers)
        request_headers.update(headers or {})
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            with _deadline(self.timeout, connection) as expired:
                try:
                    connection.request(webhook.method, target, body, request_headers)
                    response = connection.getresponse()
                    if expired.is_set():  # cut off mid-headers reads as their end: not an answer
                        raise TimeoutError("cut off")
                except (OSError, http.client.HTTPException) as exc:
                    if expired.is_set() or isinstance(exc, TimeoutError):
                        raise WebhookTimeout(
                            f"{webhook.method} {shown(url)}: no answer within {self.timeout:g}s"
                        ) from exc
                    raise WebhookConnectionError(
                        f"{webhook.method} {shown(url)}: {type(exc).__name__}: {exc}"
                    ) from exc
                status = response.status
                data = b"" if 200 <= status < 300 else self._read(response)
        finally:
            connection.close()
        names: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            names[key] = f"{names[key]}, {value}" if key in names else value
        return WebhookResponse(status, response.reason, names, data)

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        """At most max_response_bytes of the body; what arrived when the reading failed."""
        chunks: list[bytes] = []
        left = self.max_response_bytes
        with contextlib.suppress(OSError, http.client.HTTPException):
            while left > 0:
                chunk = response.read(min(left, 16384))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)

    def handler(self, webhook: WebhookPayload, delivery: Delivery) -> None:
        """The topic handler: send, and turn the answer into the timer's outcome (2xx:
        delivered; 429/503 with Retry-After: again after it; other statuses and no answer:
        raise, so the topic's RetryPolicy and then dead letters apply)."""
        if not isinstance(webhook, WebhookPayload):  # registered without payload=
            try:
                webhook = converter.structure(webhook, WebhookPayload)
            except Exception as exc:
                raise WebhookRefused(f"not a webhook payload: {exc}") from exc
        try:
            response = self.send(webhook, delivery_headers(delivery))
        except WebhookRefused as exc:
            log.warning("webhook of timer %s/%s refused, so dead-lettered: %s",
                        delivery.topic, delivery.timer_id, exc)
            raise
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


def _normal_host(host: str) -> str:
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return str(ipaddress.ip_address(host)) if _is_ip(host) else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

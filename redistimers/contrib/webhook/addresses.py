"""Where a webhook may go: the allow-list of hosts, and the check that an address is public
(not loopback, private, link-local, reserved ...), applied to every address a host resolves
to."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from ...errors import ConfigurationError
from .errors import WebhookConnectionError, WebhookRefused
from .payload import shown

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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


class AllowList:
    """The hosts of `allowed_hosts`: an entry is a host name or IP address that must match
    exactly, `*.example.com` for any subdomain of example.com (not example.com itself), or
    `*` for any host."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        if isinstance(allowed_hosts, str):
            raise ConfigurationError("allowed_hosts must be a list of hosts, not one str")
        self._any_host = False
        self._hosts: set[str] = set()
        self._suffixes: list[str] = []
        self._entries: list[str] = []
        for entry in allowed_hosts:
            self._allow(entry)
        if not (self._any_host or self._hosts or self._suffixes):
            raise ConfigurationError("allowed_hosts is empty: no webhook could ever be sent")

    def _allow(self, entry: object) -> None:
        if not isinstance(entry, str):
            raise ConfigurationError(f"allowed host {entry!r} must be a str")
        host = normal_host(entry.strip())
        self._entries.append(host)
        if host == "*":
            self._any_host = True
            return
        name = host.removeprefix("*.")
        if not name or (any(c in name for c in "*/@:?#") and not is_ip(name)):
            raise ConfigurationError(
                f"allowed host {entry!r} must be a host name, an IP address, '*.domain' or '*'"
            )
        if host.startswith("*."):
            self._suffixes.append("." + name)
        else:
            self._hosts.add(name)

    def __str__(self) -> str:
        """The entries, for error messages: the first ten, and how many more."""
        listed = ", ".join(repr(entry) for entry in self._entries[:10])
        more = len(self._entries) - 10
        return f"({listed}, and {more} more)" if more > 0 else f"({listed})"

    def allows(self, host: str) -> bool:
        """Whether `host` (as `normal_host` gives it) is on the list."""
        return (
            self._any_host or host in self._hosts or any(host.endswith(s) for s in self._suffixes)
        )


def resolve(url: str, host: str, port: int, allow_private: bool) -> list[tuple[int, Any]]:
    """The addresses to connect to, each checked."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # gaierror: may be a passing DNS failure, so retried
        raise WebhookConnectionError(f"cannot resolve {host!r} of {shown(url)}: {exc}") from exc
    addresses: list[tuple[int, Any]] = [(info[0], info[4]) for info in infos]
    if not allow_private:
        for _, sockaddr in addresses:
            if not is_public_address(str(sockaddr[0])):
                raise WebhookRefused(
                    f"host {host!r} of {shown(url)} resolves to {sockaddr[0]}, "
                    "which is not a public address"
                )
    return addresses


def normal_host(host: str) -> str:
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return str(ipaddress.ip_address(host)) if is_ip(host) else host


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

"""One URL, three deployments: redis:// (one server), redis+sentinel:// (a Sentinel-managed
primary) and redis+cluster:// (a Redis Cluster), and the errors that name the wrong part
of a malformed URL, without ever showing its password."""

from __future__ import annotations

import logging
import sys

import pytest
import redis
from redis.cluster import RedisCluster

from redistimers import ConfigurationError, TimerScheduler
from redistimers.connect import (
    ParsedUrl,
    _without_maintenance_notifications,
    client_from_url,
    parse_url,
)
from redistimers.testing import RedisClusterNodes, RedisSentinelGroup


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster",
         ParsedUrl("redis+sentinel", (("s1", 26380), ("s2", 26379), ("::1", 26381)),
                   service="mymaster")),
        ("redis+sentinel://timers:p%40ss@s1:26379/mymaster/3",
         ParsedUrl("redis+sentinel", (("s1", 26379),), "timers", "p@ss", "mymaster", 3)),
        ("redis+sentinel://:secret@s1/mymaster",
         ParsedUrl("redis+sentinel", (("s1", 26379),), None, "secret", "mymaster")),
        ("redis+cluster://n1:7000,n2:7001,n3",
         ParsedUrl("redis+cluster", (("n1", 7000), ("n2", 7001), ("n3", 6379)))),
        ("REDIS+CLUSTER://timers:pw@n1:7000/",
         ParsedUrl("redis+cluster", (("n1", 7000),), "timers", "pw")),
    ],
)
def test_sentinel_and_cluster_urls_are_read(url: str, parsed: ParsedUrl) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://localhost:6379", "must start with one of redis://, rediss://, unix://, "
         "redis+sentinel://, redis+cluster://"),
        ("redis+sentinel://s1:26379", "no service name"),
        ("redis+sentinel://s1:26379/", "no service name"),
        ("redis+sentinel:///mymaster", "no host"),
        ("redis+sentinel://s1:port/mymaster", "the port of 's1:port' is not a port number"),
        ("redis+sentinel://s1:70000/mymaster", "not a port number (1 to 65535)"),
        ("redis+sentinel://s1,,s2/mymaster", "the address '' has no host"),
        ("redis+sentinel://s1/mymaster/zero", "the database 'zero' is not a number"),
        ("redis+sentinel://s1/mymaster/0/extra", "the path is /service_name or /service_name/db"),
        ("redis+cluster://n1:7000/0", "a Cluster URL has no path"),
        ("redis+cluster://n1:7000?ssl=true", "query parameters are not read here"),
        ("redis+cluster://[::1:7000", "is not [IPv6]:port"),
        ("redis://localhost:63x9/0", "invalid Redis URL"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_wrong_part(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as caught:
        TimerScheduler.from_url(url)
    assert words in str(caught.value)


def test_the_password_of_a_refused_url_is_never_shown() -> None:
    with pytest.raises(ConfigurationError) as caught:
        TimerScheduler.from_url("redis+sentinel://timers:hunter2@s1:bad/mymaster")
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_sentinel_url_makes_a_client_of_the_primary_that_follows_the_sentinels(
    redis_sentinel: RedisSentinelGroup, sentinel_url: str
) -> None:
    client = client_from_url(sentinel_url)
    assert isinstance(client, redis.Redis)
    client.set("probe", "1")
    assert redis_sentinel.primary.client().get("probe") == b"1"
    scheduler = TimerScheduler.from_url(sentinel_url)
    assert "'mymaster' (the primary named by the sentinels" in repr(scheduler)
    scheduler.set_timer("invoices", 1, activate_in=60, timer_id="via-sentinel")
    assert scheduler.get_timer("invoices", "via-sentinel") is not None


def test_a_cluster_url_makes_a_cluster_client(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    client = client_from_url(cluster_url)
    assert isinstance(client, RedisCluster)
    assert len(client.get_primaries()) == 3  # type: ignore[no-untyped-call]
    scheduler = TimerScheduler.from_url(cluster_url)
    assert "(a Redis Cluster)" in repr(scheduler)
    scheduler.set_timer("invoices", 1, activate_in=60, timer_id="via-cluster")
    assert scheduler.get_timer("invoices", "via-cluster") is not None


def test_other_clients_are_refused_with_what_is_taken() -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.cluster\.RedisCluster"):
        TimerScheduler(object())  # type: ignore[arg-type]


def _maintenance_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "maintenance notif" in r.getMessage()]


@pytest.mark.parametrize("kind", ["server", "sentinel", "cluster"])
def test_clients_made_from_urls_do_not_ask_redis_for_maintenance_notifications(
    kind: str, redis_url: str, sentinel_url: str, cluster_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis-py 6.4+ asks every new connection for CLIENT MAINT_NOTIFICATIONS ("auto"),
    which Redis before 8.2 refuses: a wasted round trip and a log line per connection."""
    url = {"server": redis_url, "sentinel": sentinel_url, "cluster": cluster_url}[kind]
    with caplog.at_level(logging.DEBUG, logger="redis"):
        client = client_from_url(url)
        client.set(f"maint-probe-{kind}", "1")
        client.close()
    assert _maintenance_lines(caplog) == []


def test_without_redis_py_maintenance_notifications_clients_are_made_as_before(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older redis-py has no redis.maint_notifications: nothing is passed then."""
    monkeypatch.setitem(sys.modules, "redis.maint_notifications", None)
    options: dict[str, object] = {"socket_timeout": 5}
    _without_maintenance_notifications(options)
    assert options == {"socket_timeout": 5}
    assert client_from_url(redis_url).ping()

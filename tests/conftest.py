"""Fixtures: one real redis-server per test session, flushed before every test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from redistimers import Router, TimerScheduler
from redistimers.cli.environment import SETTINGS
from redistimers.testing import RedisClusterNodes, RedisSentinelGroup, RedisServer

from ._cli_processes import CliProcesses, cli_processes
from ._cli_support import Cli, cli_runner
from .helpers import (
    Behaviour,
    Recorder,
    RecordingFactory,
    SchedulerFactory,
    ServerFactory,
    scheduler_factory,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def own_server() -> Iterator[ServerFactory]:
    """redis-servers of this test alone (not the session's), to stop, kill or restart:
    ``server = own_server(appendonly=True)`` (RedisServer's options); started, and closed
    at teardown."""
    servers: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(**options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def stopped_at_teardown() -> Iterator[list[TimerScheduler]]:
    """Schedulers a test appends here are stopped at teardown."""
    made: list[TimerScheduler] = []
    yield made
    for scheduler in made:
        scheduler.stop(timeout=5)


@pytest.fixture
def make_scheduler(
    redis_client: redis.Redis, redis_url: str, stopped_at_teardown: list[TimerScheduler]
) -> SchedulerFactory:
    """Build schedulers on the session's Redis; every one is stopped after the test."""
    return scheduler_factory(redis_url, stopped_at_teardown)


@pytest.fixture
def recording(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> RecordingFactory:
    """A scheduler whose one handler, on `topic`, records its calls:
    ``scheduler, handler = recording("ticks", behaviour, handler={"max_concurrent": 1},
    max_poll_interval=60)``; `handler` holds `Router.handler` options, the rest go to the
    scheduler. It is not started."""

    def make(
        topic: str = "ticks",
        behaviour: Behaviour | None = None,
        *,
        handler: dict[str, Any] | None = None,
        **scheduler_options: Any,
    ) -> tuple[TimerScheduler, Recorder]:
        router = Router()
        recorder = Recorder(redis_client, behaviour)
        router.handler(topic, **(handler or {}))(recorder)
        return make_scheduler(router, **scheduler_options), recorder

    return make


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event handlers block on; always set at the end so no handler thread outlives a test."""
    event = threading.Event()
    yield event
    event.set()


# -- Redis Cluster and Sentinel: started only for the tests that ask for them ---------------


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A Redis Cluster for the session (3 masters, 3 replicas). Do not kill its nodes: a
    test that does takes `fresh_cluster_nodes`."""
    cluster = RedisClusterNodes()
    cluster.start()
    yield cluster
    cluster.close()


def _flushed_cluster(cluster: RedisClusterNodes) -> RedisClusterNodes:
    down = [node.port for node in cluster.nodes if not node.running]
    if down:
        pytest.fail(f"nodes {down} of the session's cluster were stopped: use fresh_cluster_nodes")
    cluster.flushall()
    return cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterNodes) -> str:
    """The session cluster's ``redis+cluster://`` URL, every master flushed."""
    return _flushed_cluster(redis_cluster).url


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterNodes) -> Iterator[RedisCluster]:
    """A redis-py RedisCluster of the session cluster, every master flushed."""
    client = _flushed_cluster(redis_cluster).client()
    yield client
    client.close()


@pytest.fixture
def fresh_cluster_nodes() -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of this test alone (started; closed at teardown), to kill nodes of."""
    cluster = RedisClusterNodes()
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelGroup]:
    """A primary, its replica and 3 sentinels for the session. Do not kill its servers: a
    test that does takes `fresh_sentinel_group`."""
    group = RedisSentinelGroup()
    group.start()
    yield group
    group.close()


@pytest.fixture
def sentinel_url(redis_sentinel: RedisSentinelGroup) -> str:
    """The session group's ``redis+sentinel://`` URL, its primary flushed."""
    servers = [redis_sentinel.primary, redis_sentinel.replica, *redis_sentinel.sentinels]
    down = [server.port for server in servers if not server.running]
    if down:
        pytest.fail(
            f"servers {down} of the session's sentinel group were stopped: "
            "use fresh_sentinel_group"
        )
    redis_sentinel.flushall()
    return redis_sentinel.url


@pytest.fixture
def fresh_sentinel_group() -> Iterator[RedisSentinelGroup]:
    """A sentinel group of this test alone (started; closed at teardown), to kill servers of."""
    group = RedisSentinelGroup()
    group.start()
    yield group
    group.close()


# -- Flask (the extra is part of the test dependencies; imported only when asked for) --------


@pytest.fixture
def make_app(redis_client: redis.Redis, redis_url: str) -> Iterator[Any]:
    """Flask apps configured for the session's Redis (namespace "web"), each scheduler they
    created stopped at teardown (an AppFactory of tests/_flask_support.py)."""
    from ._flask_support import flask_apps

    with flask_apps(redis_url) as make:
        yield make


@pytest.fixture
def down_redis() -> Iterator[RedisServer]:
    """A redis-server on a free port, not started until the test calls start()."""
    from ._flask_support import down_redis_server

    with down_redis_server() as server:
        yield server


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[CliProcesses]:
    """Real `redistimers` processes of this test (tests/_cli_processes.py), killed after it."""
    with cli_processes(tmp_path) as started:
        yield started


@pytest.fixture
def cli(
    redis_client: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    """`redistimers` run in this process on the session's Redis (flushed), with none of the
    runner's environment variables of its options (REDISTIMERS_CONCURRENCY and the like)."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.variable, raising=False)
    return cli_runner(redis_url, capsys)

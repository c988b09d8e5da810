"""redistimers.testing's Redis Cluster (RedisClusterNodes) and Sentinel (RedisSentinelGroup)
set-ups: they form, serve through redis-py's own cluster and sentinel clients, and fail
over to a replica when a master is killed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from redistimers.testing import CLUSTER_SLOTS, RedisClusterNodes, RedisSentinelGroup, RedisServer


def _ask(server: RedisServer, *command: str | int) -> Any:
    client = server.client(decode_responses=True)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _replication(server: RedisServer) -> dict[str, Any]:
    client = server.client(decode_responses=True)
    try:
        return client.info("replication")
    finally:
        client.close()


def _key_per_master(cluster: RedisClusterNodes) -> dict[int, str]:
    """One key per master (by port), each hashing to a slot that master serves."""
    keys: dict[int, str] = {}
    masters = cluster.masters()
    for number in range(1000):
        key = f"key-{number}"
        keys.setdefault(cluster.master_of(key).port, key)
        if len(keys) == len(masters):
            return keys
    raise AssertionError("no key for every master")


# -- RedisServer's config file and cluster ports ----------------------------------------------


def test_config_lines_are_a_config_file_the_server_loads() -> None:
    server = RedisServer(config_lines=["maxmemory-policy allkeys-lru", "hz 20"])
    with server:
        assert server.config_file is not None
        assert server.config_file.read_text() == "maxmemory-policy allkeys-lru\nhz 20\n"
        client = server.client(decode_responses=True)
        try:
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
            assert client.config_get("hz") == {"hz": "20"}
        finally:
            client.close()
    assert RedisServer().config_file is None


def test_a_cluster_enabled_server_gets_a_port_whose_bus_port_is_valid() -> None:
    servers = [RedisServer(config={"cluster-enabled": "yes"}) for _ in range(20)]
    for server in servers:
        server.close()
    assert all(server.port + 10000 <= 65535 for server in servers)


# -- Redis Cluster -------------------------------------------------------------------------------


def test_the_cluster_forms_with_three_masters_holding_every_slot_and_a_replica_each(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    assert len(redis_cluster.nodes) == 6
    assert cluster_url == redis_cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{master.port}" for master in masters
    )
    for node in redis_cluster.nodes:
        assert "cluster_state:ok" in _ask(node, "CLUSTER", "INFO")
    views = redis_cluster.views()
    served = sorted(slots for view in views for slots in view.slots)
    assert served[0][0] == 0
    assert served[-1][1] == CLUSTER_SLOTS - 1
    assert sum(high - low + 1 for low, high in served) == CLUSTER_SLOTS
    assert {redis_cluster.master_of(slot).port for slot in (0, 8000, 16383)} == {
        master.port for master in masters
    }
    for master in masters:
        replica = redis_cluster.replica_of(master)
        assert redis_cluster.replicas_of(master) == [replica]
        replication = _replication(replica)
        assert replication["role"] == "slave"
        assert replication["master_port"] == master.port
        assert replication["master_link_status"] == "up"


def test_a_cluster_client_sets_and_gets_keys_landing_on_every_master(
    redis_cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    keys = _key_per_master(redis_cluster)
    assert len(keys) == 3
    for port, key in keys.items():
        assert cluster_client.set(key, f"on {port}")
    for port, key in keys.items():
        assert cluster_client.get(key) == f"on {port}".encode()
        master = next(node for node in redis_cluster.nodes if node.port == port)
        assert _ask(master, "GET", key) == f"on {port}"  # it landed on that master
    assert {node.port for node in cluster_client.get_primaries()} == set(keys)


def test_flushall_empties_every_master(
    redis_cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    keys = _key_per_master(redis_cluster)
    for key in keys.values():
        cluster_client.set(key, "x")
    redis_cluster.flushall()  # what cluster_url and cluster_client do before a test
    assert all(cluster_client.get(key) is None for key in keys.values())


@pytest.mark.slow
def test_kill_master_promotes_its_replica_and_the_cluster_serves_its_slots_again(
    fresh_cluster_nodes: RedisClusterNodes,
) -> None:
    cluster = fresh_cluster_nodes
    client = cluster.client()
    try:
        keys = _key_per_master(cluster)
        for port, key in keys.items():
            client.set(key, f"on {port}")
        victim = cluster.masters()[0]
        replica = cluster.replica_of(victim)
        assert _ask(victim, "WAIT", 1, 5000) == 1  # the replica has the key

        killed = cluster.kill_master(0)
        assert killed is victim
        assert not killed.running
        promoted = cluster.wait_for_failover(timeout=15)

        assert promoted is replica
        assert _replication(promoted)["role"] == "master"
        assert victim not in cluster.masters()
        assert promoted in cluster.masters()
        assert len(cluster.masters()) == 3
        moved_key = keys[victim.port]
        assert cluster.master_of(moved_key) is promoted
        assert client.get(moved_key) == f"on {victim.port}".encode()
        assert client.set(moved_key, "after the failover")
        assert _ask(promoted, "GET", moved_key) == "after the failover"
        for port, key in keys.items():
            if port != victim.port:
                assert client.get(key) == f"on {port}".encode()
    finally:
        client.close()


# -- Sentinel ------------------------------------------------------------------------------------


@pytest.fixture
def master_client(redis_sentinel: RedisSentinelGroup, sentinel_url: str) -> Iterator[redis.Redis]:
    client = redis_sentinel.master_client()
    yield client
    client.close()


def test_the_sentinels_report_the_primary_and_its_replica(
    redis_sentinel: RedisSentinelGroup, sentinel_url: str
) -> None:
    group = redis_sentinel
    assert sentinel_url == group.url == "redis+sentinel://" + ",".join(
        f"127.0.0.1:{sentinel.port}" for sentinel in group.sentinels
    ) + "/mymaster"
    assert group.sentinel_addresses == [("127.0.0.1", s.port) for s in group.sentinels]
    assert len(group.sentinels) == 3
    for sentinel in group.sentinels:
        assert group.master_address(sentinel) == ("127.0.0.1", group.primary.port)
        replicas = _ask(sentinel, "SENTINEL", "REPLICAS", "mymaster")  # parsed by redis-py
        assert [(r["port"], r["flags"]) for r in replicas] == [(str(group.replica.port), "slave")]
        assert len(_ask(sentinel, "SENTINEL", "SENTINELS", "mymaster")) == 2
    assert _replication(group.primary)["role"] == "master"
    assert _replication(group.replica)["master_port"] == group.primary.port


def test_a_master_for_client_writes_to_the_primary(
    redis_sentinel: RedisSentinelGroup, master_client: redis.Redis
) -> None:
    assert master_client.set("greeting", "hello")
    assert master_client.get("greeting") == b"hello"
    assert _ask(redis_sentinel.primary, "GET", "greeting") == "hello"
    assert _ask(redis_sentinel.primary, "WAIT", 1, 5000) == 1
    assert _ask(redis_sentinel.replica, "GET", "greeting") == "hello"


@pytest.mark.slow
def test_kill_primary_promotes_the_replica_and_master_for_writes_to_it(
    fresh_sentinel_group: RedisSentinelGroup,
) -> None:
    group = fresh_sentinel_group
    old_primary, old_replica = group.primary, group.replica
    client = group.master_client(socket_timeout=1.0)
    try:
        client.set("before", "1")
        assert _ask(old_primary, "WAIT", 1, 5000) == 1

        assert group.kill_primary() is old_primary
        assert not old_primary.running
        promoted = group.wait_for_failover(timeout=20)

        assert promoted is old_replica
        assert group.primary is old_replica
        assert group.replica is old_primary
        assert _replication(promoted)["role"] == "master"
        for sentinel in group.sentinels:
            assert group.master_address(sentinel) == ("127.0.0.1", promoted.port)
        assert client.get("before") == b"1"  # the old client follows the sentinels
        assert client.set("after", "2")
        fresh = group.master_client()
        try:
            assert fresh.set("fresh", "3")
        finally:
            fresh.close()
        assert _ask(promoted, "MGET", "before", "after", "fresh") == ["1", "2", "3"]
    finally:
        client.close()

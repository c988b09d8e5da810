"""Which Redis a run measures: one redis-server, a Redis Cluster or a Sentinel-managed
primary, started by the harness (``--redis``) or given (``--redis-url``, its kind read
from the scheme).

On a Cluster the harness starts 3 masters with a replica each; on Sentinel a primary, one
replica and 3 sentinels. Only redistimers runs there, on the workloads of
TOPOLOGY_WORKLOADS: the peers are measured on one redis-server.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import redis

Kind = Literal["server", "cluster", "sentinel"]
KINDS: tuple[Kind, ...] = ("server", "cluster", "sentinel")

#: Workloads that run on a Cluster or on Sentinel (the rest need one server: the scale
#: fill and the lateness cases measure the library, not the topology).
TOPOLOGY_WORKLOADS = ("schedule", "drain", "drain-4", "memory")
CLUSTER_MASTERS = 3
CLUSTER_REPLICAS_PER_MASTER = 1

#: What a peer's cells say on a Cluster or Sentinel.
PEERS_REFUSED = ("the peers are measured on one redis-server (--redis server); "
                 "this run is redistimers on a {what}")


def kind_of_url(url: str) -> Kind:
    scheme = url.partition("://")[0].lower()
    if scheme == "redis+cluster":
        return "cluster"
    if scheme == "redis+sentinel":
        return "sentinel"
    return "server"


@attrs.define
class Topology:
    """The Redis of a run: its URL, what it is, and what to stop at the end."""

    kind: Kind
    url: str
    #: One line for the report: what it is and who started it.
    where: str
    #: What the harness started (closed at the end), or None.
    handle: Any = None

    @property
    def what(self) -> str:
        return {"server": "single redis-server", "cluster": "Redis Cluster",
                "sentinel": "Sentinel-managed primary"}[self.kind]

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def start(kind: Kind) -> Topology:
    """Start a redis-server, a Cluster (3 masters, 1 replica each) or a Sentinel group
    (primary, replica, 3 sentinels), none with a memory limit."""
    from redistimers.testing import (
        RedisClusterNodes,
        RedisSentinelGroup,
        RedisServer,
        find_redis_server,
    )

    unlimited = {"maxmemory": "0", "maxmemory-policy": "noeviction"}
    executable = find_redis_server()
    if kind == "server":
        server = RedisServer(config=unlimited)
        url = server.start()
        return Topology(kind, url, f"started by the harness: {executable}", server)
    if kind == "cluster":
        cluster = RedisClusterNodes(
            masters=CLUSTER_MASTERS, replicas_per_master=CLUSTER_REPLICAS_PER_MASTER,
            config=unlimited,
        )
        url = cluster.start()
        return Topology(
            kind, url,
            f"a Redis Cluster of {CLUSTER_MASTERS} masters with "
            f"{CLUSTER_REPLICAS_PER_MASTER} replica each, started by the harness: {executable}",
            cluster,
        )
    group = RedisSentinelGroup()  # its data nodes have redis-server's default: no limit
    url = group.start()
    return Topology(
        kind, url,
        f"a primary with 1 replica and {len(group.sentinels)} sentinels (service "
        f"{group.service}), started by the harness: {executable}",
        group,
    )


def given(url: str) -> Topology:
    kind = kind_of_url(url)
    return Topology(kind, url, f"given by --redis-url ({kind})")


def replica_count(client: redis.Redis) -> int:
    """Replicas connected to the master this client talks to."""
    return int(client.info("replication").get("connected_slaves", 0))

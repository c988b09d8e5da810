"""What the Redis server says it did: INFO snapshots and their differences, less the
harness's own commands. On a Redis Cluster, every master's counters, summed.

The harness talks to Redis on one connection of its own (the probe) and counts every
command it sends there, so a difference of two snapshots can leave those out exactly:
the INFO calls themselves and the MGETs that read the workers' progress. The adapters'
progress reports (a SET at most every 50 ms per worker, only while timers fire) are not
left out; they are about 0.001 commands per timer at 20,000 timers/s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
import redis
from redis.cluster import RedisCluster

from .topology import kind_of_url


@attrs.frozen
class Snapshot:
    """Counters of the server (on a Cluster: every master's, summed) at one moment, and of
    our own commands until then."""

    calls: dict[str, int]
    cpu_s: float
    reads: int
    used_memory: int
    own_calls: dict[str, int]
    own_reads: int
    #: used_cpu_user + used_cpu_sys of each master, by its name (host:port).
    cpu_by_master: dict[str, float] = attrs.Factory(dict)

    def since(self, before: Snapshot) -> Delta:
        names = set(self.calls) | set(before.calls)
        calls = {
            name: self.calls.get(name, 0) - before.calls.get(name, 0)
            - (self.own_calls.get(name, 0) - before.own_calls.get(name, 0))
            for name in names
            if name != "info"
        }
        return Delta(
            calls={name: count for name, count in calls.items() if count},
            cpu_s=self.cpu_s - before.cpu_s,
            reads=self.reads - before.reads - (self.own_reads - before.own_reads),
            cpu_by_master={
                name: round(cpu - before.cpu_by_master.get(name, 0.0), 6)
                for name, cpu in self.cpu_by_master.items()
            },
        )


@attrs.frozen
class Delta:
    """What the server (the masters, summed) did between two snapshots, less the probe's
    commands."""

    #: Commands executed, by name; those run inside scripts count too.
    calls: dict[str, int]
    #: used_cpu_user + used_cpu_sys.
    cpu_s: float
    #: total_reads_processed: socket reads of client requests, about one per round trip.
    reads: int
    #: cpu_s of each master, by its name.
    cpu_by_master: dict[str, float] = attrs.Factory(dict)

    @property
    def commands(self) -> int:
        return sum(self.calls.values())


class Probe:
    """The harness's own connections to Redis, counting what it sends.

    On one server (or the primary of a Sentinel group) that is one connection; on a
    Cluster, one to each master (for INFO, FLUSHALL and CONFIG RESETSTAT, summed) and a
    cluster client for the workers' progress keys, which live on whichever master their
    slot is.
    """

    def __init__(self, url: str) -> None:
        # No socket timeout (redis-py 8 has 5 s): a FLUSHALL of 10 million timers takes long.
        self.kind = kind_of_url(url)
        if self.kind == "server":
            self.client: Any = redis.Redis.from_url(url, decode_responses=True,
                                                    socket_timeout=None)
        else:
            from redistimers.connect import client_from_url

            self.client = client_from_url(url, decode_responses=True, socket_timeout=None)
        self._calls: Counter[str] = Counter()
        self._reads = 0
        self.cluster = isinstance(self.client, RedisCluster)
        self.masters: dict[str, redis.Redis] = {}
        if self.cluster:
            for node in sorted(self.client.get_primaries(), key=lambda node: node.port):
                master = self.client.get_redis_connection(node)
                self.masters[node.name] = master
                self._count("ping")  # opens the connection before any measurement
                master.ping()
        else:
            self.masters[self._address()] = self.client

    def _address(self) -> str:
        """host:port (or the socket's path) of one server, or of a Sentinel's primary."""
        pool = self.client.connection_pool
        if hasattr(pool, "get_master_address"):
            host, port = pool.get_master_address()
            return f"{host}:{port}"
        kwargs = pool.connection_kwargs
        return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")

    def _count(self, command: str) -> None:
        # Counted before sending: the server counts the read before it runs the command.
        self._calls[command] += 1
        self._reads += 1

    def snapshot(self) -> Snapshot:
        calls: Counter[str] = Counter()
        cpu: dict[str, float] = {}
        reads = used = 0
        for name, master in self.masters.items():
            self._count("info")
            info = master.info("all")
            for key, value in info.items():
                if key.startswith("cmdstat_") and isinstance(value, dict):
                    calls[key.removeprefix("cmdstat_")] += int(value["calls"])
            cpu[name] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            reads += int(info["total_reads_processed"])
            used += int(info["used_memory"])
        return Snapshot(
            calls=dict(calls),
            cpu_s=sum(cpu.values()),
            reads=reads,
            used_memory=used,
            own_calls=dict(self._calls),
            own_reads=self._reads,
            cpu_by_master=cpu,
        )

    def used_memory(self) -> int:
        """used_memory, summed over the masters."""
        total = 0
        for master in self.masters.values():
            self._count("info")
            total += int(master.info("memory")["used_memory"])
        return total

    def counts(self, prefix: str, names: Sequence[str]) -> list[int]:
        """The integers at `prefix` + name (0 where missing), in one MGET (on a Cluster,
        a GET each, on the master of its slot)."""
        if not names:
            return []
        keys = [prefix + name for name in names]
        if self.cluster:
            values = []
            for key in keys:
                self._count("get")
                values.append(self.client.get(key))
        else:
            self._count("mget")
            values = self.client.mget(keys)
        return [int(value) if value else 0 for value in values]

    def progress(self, names: Sequence[str]) -> int:
        """Handler calls the named workers have reported, in all."""
        return sum(self.counts("bench:progress:", names))

    def ready(self, names: Sequence[str]) -> list[bool]:
        return [bool(value) for value in self.counts("bench:ready:", names)]

    def reset(self) -> None:
        """FLUSHALL and CONFIG RESETSTAT (on every master): a fresh Redis for the next
        case."""
        for master in self.masters.values():
            self._count("flushall")
            master.flushall()
            self._count("config|resetstat")
            master.config_resetstat()
        self._calls.clear()  # RESETSTAT zeroed the servers' counters as well
        self._reads = 0

    def master_of(self, key: str) -> str:
        """The name of the master holding `key` (host:port)."""
        if not self.cluster:
            return next(iter(self.masters))
        return str(self.client.get_node_from_key(key).name)

    def replicas(self) -> int:
        """The fewest replicas any master has connected."""
        counts = []
        for master in self.masters.values():
            self._count("info")
            counts.append(int(master.info("replication").get("connected_slaves", 0)))
        return min(counts)

    def config_get(self, name: str) -> dict[str, str]:
        """CONFIG GET of the first master."""
        self._count("config|get")
        config = next(iter(self.masters.values())).config_get(name)
        return {str(key): str(value) for key, value in config.items()}

    def server_info(self) -> dict[str, str]:
        self._count("info")
        info = next(iter(self.masters.values())).info("server")
        return {key: str(info[key]) for key in ("redis_version", "os", "arch_bits") if key in info}

    def close(self) -> None:
        self.client.close()

"""What the Redis server says it did: INFO snapshots and their differences, less the
harness's own commands.

The harness talks to Redis on one connection of its own (the probe) and counts every
command it sends there, so a difference of two snapshots can leave those out exactly:
the INFO calls themselves and the MGETs that read the workers' progress. The adapters'
progress reports (a SET at most every 50 ms per worker, only while timers fire) are not
left out; they are about 0.001 commands per timer at 20,000 timers/s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs
import redis


@attrs.frozen
class Snapshot:
    """Counters of the server at one moment, and of our own commands until then."""

    calls: dict[str, int]
    cpu_s: float
    reads: int
    used_memory: int
    own_calls: dict[str, int]
    own_reads: int

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
        )


@attrs.frozen
class Delta:
    """What the server did between two snapshots, less the probe's commands."""

    #: Commands executed, by name; those run inside scripts count too.
    calls: dict[str, int]
    #: used_cpu_user + used_cpu_sys.
    cpu_s: float
    #: total_reads_processed: socket reads of client requests, about one per round trip.
    reads: int

    @property
    def commands(self) -> int:
        return sum(self.calls.values())


class Probe:
    """The harness's own connection to Redis, counting what it sends."""

    def __init__(self, url: str) -> None:
        # No socket timeout (redis-py 8 has 5 s): a FLUSHALL of 10 million timers takes long.
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self._calls: Counter[str] = Counter()
        self._reads = 0

    def _count(self, command: str) -> None:
        # Counted before sending: the server counts the read before it runs the command.
        self._calls[command] += 1
        self._reads += 1

    def snapshot(self) -> Snapshot:
        self._count("info")
        info = self.client.info("all")
        calls = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_") and isinstance(value, dict)
        }
        return Snapshot(
            calls=calls,
            cpu_s=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            reads=int(info["total_reads_processed"]),
            used_memory=int(info["used_memory"]),
            own_calls=dict(self._calls),
            own_reads=self._reads,
        )

    def used_memory(self) -> int:
        self._count("info")
        return int(self.client.info("memory")["used_memory"])

    def counts(self, prefix: str, names: Sequence[str]) -> list[int]:
        """The integers at `prefix` + name (0 where missing), in one MGET."""
        if not names:
            return []
        self._count("mget")
        values = self.client.mget([prefix + name for name in names])
        return [int(value) if value else 0 for value in values]

    def progress(self, names: Sequence[str]) -> int:
        """Handler calls the named workers have reported, in all."""
        return sum(self.counts("bench:progress:", names))

    def ready(self, names: Sequence[str]) -> list[bool]:
        return [bool(value) for value in self.counts("bench:ready:", names)]

    def reset(self) -> None:
        """FLUSHALL and CONFIG RESETSTAT: a fresh server for the next case."""
        self._count("flushall")
        self.client.flushall()
        self._count("config|resetstat")
        self.client.config_resetstat()
        self._calls.clear()  # RESETSTAT zeroed the server's counters as well
        self._reads = 0

    def server_info(self) -> dict[str, str]:
        self._count("info")
        info = self.client.info("server")
        return {key: str(info[key]) for key in ("redis_version", "os", "arch_bits") if key in info}

    def close(self) -> None:
        self.client.close()

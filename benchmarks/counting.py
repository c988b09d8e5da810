"""What the redistimers adapter's worker measures in its own process: its round trips to
Redis, counted client-side by thread, and, when asked, a cProfile of its threads.

A round trip is one call of `Connection.send_packed_command`: a single command or a whole
pipeline is one; the wake-up listener's pub/sub connection counts its handshake (HELLO,
CLIENT ...) and SUBSCRIBE. The clients of `counting_client` count theirs in ROUND_TRIPS.

``python -m benchmarks --profile DIR`` sets PROFILE_ENV for the workers it starts; the
redistimers adapter then profiles the threads of each worker (ThreadProfiles) and writes
``DIR/<worker>.<thread group>.pstat`` when it stops. Profiling slows the workers, so the
figures of such a run are not comparable with others; read the files with
``python -m pstats``.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse

import redis
from redis.sentinel import SentinelManagedConnection

#: The environment variable naming the folder the adapter's workers write profiles to.
PROFILE_ENV = "BENCHMARKS_PROFILE_DIR"


def thread_group(name: str) -> str:
    """Handler threads are counted together."""
    return "redistimers-handler" if name.startswith("redistimers-handler") else name


class RoundTrips:
    """Calls of Connection.send_packed_command, by thread group: one per round trip."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: Counter[str] = Counter()

    def add(self) -> None:
        name = thread_group(threading.current_thread().name)
        with self._lock:
            self._by_thread[name] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._by_thread)


ROUND_TRIPS = RoundTrips()


class _CountingMixin:
    """Counts every packed command sent: a single command, or a whole pipeline, is one."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        ROUND_TRIPS.add()
        super().send_packed_command(command, check_health)  # type: ignore[misc]


class CountingConnection(_CountingMixin, redis.Connection):
    pass


class CountingSSLConnection(_CountingMixin, redis.SSLConnection):
    pass


class CountingUnixConnection(_CountingMixin, redis.UnixDomainSocketConnection):
    pass


class CountingSentinelConnection(_CountingMixin, SentinelManagedConnection):
    pass


def counting_client(url: str) -> Any:
    """A client of `url` whose connections count their round trips in ROUND_TRIPS: a
    redis-py URL's, or, for redis+cluster:// and redis+sentinel:// URLs, the client
    redistimers.connect would make (a Cluster's: every node's connections count; a
    Sentinel group's: the primary's, not the sentinels')."""
    scheme = urlparse(url).scheme
    if scheme in ("redis+cluster", "redis+sentinel"):
        from redistimers.connect import client_from_url, parse_url

        if scheme == "redis+sentinel":
            return client_from_url(url, connection_class=CountingSentinelConnection)
        # RedisCluster hands connection_class to its nodes' pools only when it is made
        # from a URL (one node's: it discovers the others).
        from redis.cluster import RedisCluster

        parsed = parse_url(url)
        host, port = parsed.hosts[0]
        return RedisCluster(url=f"redis://{host}:{port}", username=parsed.username,
                            password=parsed.password, connection_class=CountingConnection)
    connection_class: type[redis.connection.AbstractConnection] = {
        "unix": CountingUnixConnection,
        "rediss": CountingSSLConnection,
    }.get(scheme, CountingConnection)
    pool = redis.ConnectionPool.from_url(url, connection_class=connection_class)
    return redis.Redis(connection_pool=pool)


_FILE_UNSAFE = re.compile(r"[^\w.-]+")


class ThreadProfiles:
    """cProfile (each thread's CPU clock, so waits do not count) of every thread started
    after `install()`, one profiler per thread, saved by thread group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles: list[tuple[str, cProfile.Profile]] = []

    def install(self) -> None:
        threading.setprofile(self._start_in_thread)

    def _start_in_thread(self, frame: FrameType, event: str, arg: object) -> None:
        # Runs once, as the first profile event of each new thread: hand over to cProfile.
        profile = cProfile.Profile(time.thread_time)
        try:
            profile.enable()
        except ValueError:  # another profiler is active (sys.monitoring, Python >= 3.12)
            sys.setprofile(None)  # leave this thread out rather than fail it
            return
        with self._lock:
            self._profiles.append((thread_group(threading.current_thread().name), profile))

    def save(self, folder: Path, prefix: str) -> list[Path]:
        """Write ``<folder>/<prefix>.<thread group>.pstat`` for each group (its threads'
        stats merged); call once the profiled threads have ended."""
        threading.setprofile(None)
        with self._lock:
            profiles = list(self._profiles)
        by_group: dict[str, list[cProfile.Profile]] = {}
        for group, profile in profiles:
            profile.create_stats()
            by_group.setdefault(group, []).append(profile)
        written = []
        for group, members in sorted(by_group.items()):
            path = folder / f"{prefix}.{_FILE_UNSAFE.sub('_', group)}.pstat"
            stats = pstats.Stats(members[0])
            for profile in members[1:]:
                stats.add(profile)
            stats.dump_stats(str(path))
            written.append(path)
        return written

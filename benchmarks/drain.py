"""Drain benchmark: how fast one TimerScheduler fires a backlog of due timers, and what it
costs Redis.

It schedules N timers that are already due (``activate_in=0``) on one topic with the
public API, then starts ONE TimerScheduler with a no-op handler and measures, from
``start()`` until the handler has been called N times:

* timers/s;
* network round trips to Redis per fired timer, counted in this process by a
  `redis.Connection` subclass (passed as the client pool's ``connection_class``) that
  counts ``send_packed_command`` calls: a pipeline is one; the wake-up listener's new
  pub/sub connection counts its handshake (HELLO, CLIENT ...) and SUBSCRIBE;
* Redis commands per timer, from the INFO commandstats delta (this counts the commands
  run inside Lua scripts as well as the EVALSHA itself, so it is not a round-trip count);
* Redis CPU microseconds per timer, from the used_cpu_user + used_cpu_sys delta;
* this process's CPU microseconds per timer, in all and per thread (poller, handlers).

The same figures are also given "settled": until ``stop()`` returned, which includes the
acks of the last timers. The fill phase (set_timer rate) is measured on its own and
excluded from the drain figures.

Usage::

    python benchmarks/drain.py                       # embedded redis-server, N=20000
    python benchmarks/drain.py --max-concurrent 200 --repeat 3
    python benchmarks/drain.py --redis-url redis://localhost:6379/0
    python benchmarks/drain.py --profile /tmp/drain.pstat   # cProfile of every scheduler thread

The output is human-readable lines, then one JSON line with every figure. The exit
status is 1 when a run did not fire every timer within ``--timeout`` seconds (or left
timers behind in Redis), 0 otherwise.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import secrets
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import FrameType
from typing import Any
from urllib.parse import urlparse

import attrs
import redis

import redistimers
from redistimers import Router, TimerScheduler
from redistimers.testing import RedisServer

TOPIC = "drain"

#: Default for --max-concurrent. With a no-op handler the poller thread is the bottleneck,
#: and one poller turn (one pipelined round trip) claims at most the topic's free slots.
#: 100 handler threads let a turn settle and claim dozens of timers; far more threads
#: cost more to start than they save (1000 drained slower), and the library's own
#: default, 10, caps a turn at 10 timers: >= 0.1 round trips per timer.
DEFAULT_MAX_CONCURRENT = 100


# -- counting round trips --------------------------------------------------------------


def thread_group(name: str) -> str:
    """Handler threads are counted together."""
    return "redistimers-handler" if name.startswith("redistimers-handler") else name


class RoundTrips:
    """Calls of Connection.send_packed_command, by thread name: one per round trip."""

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


def counting_client(url: str) -> redis.Redis:
    """A client of `url` whose connections count their round trips in ROUND_TRIPS."""
    scheme = urlparse(url).scheme
    connection_class: type[redis.connection.AbstractConnection] = {
        "unix": CountingUnixConnection,
        "rediss": CountingSSLConnection,
    }.get(scheme, CountingConnection)
    pool = redis.ConnectionPool.from_url(url, connection_class=connection_class)
    return redis.Redis(connection_pool=pool)


# -- CPU time of this process --------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by this process's live threads, by thread group (empty
    where per-thread CPU clocks are not available).
    """
    used: dict[str, float] = {}
    if not hasattr(time, "pthread_getcpuclockid"):
        return used
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # the thread ended meanwhile
            continue
        group = thread_group(thread.name)
        used[group] = used.get(group, 0.0) + seconds
    return used


def cpu_since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {group: seconds - before.get(group, 0.0) for group, seconds in after.items()}


# -- what Redis says it did --------------------------------------------------------------


@attrs.frozen
class ServerStats:
    """Command calls (by command) and CPU seconds of the Redis server so far."""

    calls: dict[str, int]
    usec: dict[str, int]
    cpu_s: float

    @classmethod
    def read(cls, client: redis.Redis) -> ServerStats:
        # One INFO (Redis 6.2 takes a single section; "all" has cpu and commandstats).
        info = client.info("all")
        stats = {
            key.removeprefix("cmdstat_"): value
            for key, value in info.items()
            if key.startswith("cmdstat_") and isinstance(value, dict)
        }
        return cls(
            calls={name: int(value["calls"]) for name, value in stats.items()},
            usec={name: int(value["usec"]) for name, value in stats.items()},
            cpu_s=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        )

    def since(self, before: ServerStats) -> ServerDelta:
        """What Redis did since `before`, leaving out our own INFO calls."""
        calls = {
            name: count - before.calls.get(name, 0)
            for name, count in self.calls.items()
            if name != "info" and count != before.calls.get(name, 0)
        }
        usec = {name: self.usec[name] - before.usec.get(name, 0) for name in calls}
        return ServerDelta(calls, usec, self.cpu_s - before.cpu_s)


@attrs.frozen
class ServerDelta:
    """Commands (calls and microseconds, by command) and CPU seconds of an interval."""

    calls: dict[str, int]
    usec: dict[str, int]
    cpu_s: float


# -- one run ---------------------------------------------------------------------------


@attrs.frozen
class Tick:
    """The payload of every timer: its index, so that duplicates and gaps show."""

    index: int


class Fired:
    """What the handler saw; `all` is set once it has been called `n` times."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.indexes: list[int] = []  # list.append is atomic: no lock in the handler
        self.all = threading.Event()

    def hit(self, tick: Tick) -> None:
        self.indexes.append(tick.index)
        if len(self.indexes) >= self.n:
            self.all.set()


@attrs.frozen
class Phase:
    """Figures of one measured interval, per fired timer where it says so."""

    seconds: float
    timers_per_s: float
    round_trips: int
    round_trips_per_timer: float
    round_trips_by_thread: dict[str, int]
    commands_per_timer: float
    commands: dict[str, int]
    #: Microseconds Redis spent in each command (EVALSHA's include its inner commands).
    command_usec: dict[str, int]
    redis_cpu_us_per_timer: float
    #: CPU time of this whole process (all threads) per timer.
    client_cpu_us_per_timer: float
    #: CPU time per timer of the threads that ran during the drain, by thread group.
    client_cpu_us_per_timer_by_thread: dict[str, float]


def phase(
    n: int,
    seconds: float,
    trips: Counter[str],
    stats: ServerDelta,
    process_cpu_s: float,
    threads_cpu_s: dict[str, float],
) -> Phase:
    total_trips = sum(trips.values())
    return Phase(
        seconds=seconds,
        timers_per_s=n / seconds if seconds > 0 else float("inf"),
        round_trips=total_trips,
        round_trips_per_timer=total_trips / n,
        round_trips_by_thread=dict(sorted(trips.items())),
        commands_per_timer=sum(stats.calls.values()) / n,
        commands=dict(sorted(stats.calls.items(), key=lambda kv: -kv[1])),
        command_usec=dict(sorted(stats.usec.items(), key=lambda kv: -kv[1])),
        redis_cpu_us_per_timer=stats.cpu_s * 1e6 / n,
        client_cpu_us_per_timer=process_cpu_s * 1e6 / n,
        client_cpu_us_per_timer_by_thread={
            name: round(cpu_s * 1e6 / n, 2)
            for name, cpu_s in sorted(threads_cpu_s.items(), key=lambda kv: -kv[1])
            if cpu_s > 0
        },
    )


@attrs.frozen
class RunResult:
    ok: bool
    problem: str | None
    fill_s: float
    set_timer_per_s: float
    fired: int
    distinct: int
    handler_threads: int
    left_in_redis: int
    drain: Phase
    settled: Phase


class ThreadProfiles:
    """cProfile (thread CPU clock) of every thread started after `install()` (the
    scheduler's poller, handler and wake-up threads), one profiler per thread, merged by
    `save()`.

    The drain's figures are slower while profiling; only where the time goes is of use.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._profiles: list[tuple[str, cProfile.Profile]] = []

    def install(self) -> None:
        threading.setprofile(self._start_in_thread)

    def _start_in_thread(self, frame: FrameType, event: str, arg: object) -> None:
        # Runs once, as the first profile event of each new thread: hand over to cProfile.
        profile = cProfile.Profile(time.thread_time)  # CPU time: waits do not count
        with self._lock:
            self._profiles.append((thread_group(threading.current_thread().name), profile))
        profile.enable()

    def save(self, path: str, top: int = 25) -> None:
        """Merge the threads' stats into one pstats file; print each group's hot spots."""
        threading.setprofile(None)
        with self._lock:
            profiles = list(self._profiles)
        by_group: dict[str, pstats.Stats] = {}
        for group, profile in profiles:
            profile.create_stats()
            if group in by_group:
                by_group[group].add(profile)
            else:
                by_group[group] = pstats.Stats(profile)
        if not by_group:
            print("profile: no thread was profiled")
            return
        merged: pstats.Stats | None = None
        for group, stats in sorted(by_group.items()):
            total = getattr(stats, "total_tt", 0.0)
            print(f"profile: thread group {group}: {total:.3f} s CPU in profiled functions")
            if total > 0.05 * sum(getattr(s, "total_tt", 0.0) for s in by_group.values()):
                print(f"profile: top {top} functions of {group} by own time")
                stats.sort_stats(pstats.SortKey.TIME).print_stats(top)
            if merged is None:
                merged = stats
            else:
                merged.add(stats)
        assert merged is not None
        merged.dump_stats(path)
        print(f"profile: merged cProfile stats of every scheduler thread written to {path}")


def run_once(
    url: str,
    stats_client: redis.Redis,
    n: int,
    max_concurrent: int,
    timeout: float,
    profile: str | None,
) -> RunResult:
    namespace = f"bench-drain-{secrets.token_hex(4)}"
    fired = Fired(n)
    router = Router()

    @router.handler(TOPIC, payload=Tick, max_concurrent=max_concurrent)
    def on_tick(tick: Tick) -> None:
        fired.hit(tick)

    client = counting_client(url)
    scheduler = TimerScheduler(client, routers=[router], namespace=namespace)
    profiles = ThreadProfiles() if profile else None
    try:
        # Fill: one set_timer (one round trip) per timer, before the scheduler runs.
        started = time.perf_counter()
        for i in range(n):
            scheduler.set_timer(TOPIC, Tick(i), activate_in=0)
        fill_s = time.perf_counter() - started

        # Drain: from start() until the handler has been called n times.
        trips_before = ROUND_TRIPS.snapshot()
        stats_before = ServerStats.read(stats_client)
        if profiles is not None:
            profiles.install()
        threads_before = thread_cpu()
        process_before = time.process_time()
        started = time.perf_counter()
        scheduler.start()
        all_fired = fired.all.wait(timeout)
        drain_s = time.perf_counter() - started
        process_drain = time.process_time() - process_before
        threads_drain = cpu_since(threads_before, thread_cpu())
        handler_threads = sum(
            t.name.startswith("redistimers-handler") for t in threading.enumerate()
        )
        trips_drain = ROUND_TRIPS.snapshot() - trips_before
        stats_drain = ServerStats.read(stats_client)

        # Settled: until stop() returned, which acks the last timers.
        stopped_cleanly = scheduler.stop(timeout=10)
        settled_s = time.perf_counter() - started
        process_settled = time.process_time() - process_before
        trips_settled = ROUND_TRIPS.snapshot() - trips_before
        stats_settled = ServerStats.read(stats_client)
    finally:
        scheduler.stop(timeout=0)
    if profiles is not None and profile is not None:
        profiles.save(profile)

    due_key = f"{namespace}:{{{TOPIC}}}:due"
    body_key = f"{namespace}:{{{TOPIC}}}:body"
    left = int(stats_client.zcard(due_key)) + int(stats_client.hlen(body_key))
    stats_client.delete(
        *(f"{namespace}:{{{TOPIC}}}:{kind}" for kind in
          ("due", "body", "lease", "attempts", "seq", "dead", "dead_body")),
        f"{namespace}:topics",
    )
    client.close()

    distinct = len(set(fired.indexes))
    problem = None
    if not all_fired:
        problem = f"only {len(fired.indexes)} of {n} timers fired within {timeout:g}s"
    elif distinct != n:
        problem = f"{n} handler calls covered only {distinct} distinct timers"
    elif not stopped_cleanly:
        problem = "stop() did not drain within 10s"
    elif left:
        problem = f"{left} timer keys left in Redis after stop()"
    fired_n = max(1, min(len(fired.indexes), n))
    return RunResult(
        ok=problem is None,
        problem=problem,
        fill_s=fill_s,
        set_timer_per_s=n / fill_s,
        fired=len(fired.indexes),
        distinct=distinct,
        handler_threads=handler_threads,
        left_in_redis=left,
        drain=phase(
            fired_n, drain_s, trips_drain, stats_drain.since(stats_before),
            process_drain, threads_drain,
        ),
        settled=phase(
            fired_n, settled_s, trips_settled, stats_settled.since(stats_before),
            process_settled, {},  # handler threads are gone after stop()
        ),
    )


# -- reporting -------------------------------------------------------------------------


def describe(label: str, p: Phase) -> str:
    threads = ", ".join(f"{name} {count}" for name, count in p.round_trips_by_thread.items())
    cpu = ", ".join(
        f"{name} {us:.1f}" for name, us in p.client_cpu_us_per_timer_by_thread.items()
    )
    top = ", ".join(
        f"{name} {calls} ({p.command_usec.get(name, 0) / 1000:.0f} ms)"
        for name, calls in list(p.commands.items())[:8]
    )
    return (
        f"  {label:<8} {p.seconds:7.3f} s  {p.timers_per_s:9.0f} timers/s  "
        f"{p.round_trips_per_timer:.4f} round trips/timer ({p.round_trips}: {threads})  "
        f"{p.commands_per_timer:.2f} commands/timer  "
        f"{p.redis_cpu_us_per_timer:.1f} us Redis CPU/timer\n"
        f"           Redis commands (calls, time): {top}\n"
        f"           client CPU {p.client_cpu_us_per_timer:.1f} us/timer"
        + (f" ({cpu})" if cpu else "")
    )


def median_of(results: Sequence[RunResult], pick: str, field: str) -> float:
    return float(statistics.median(getattr(getattr(r, pick), field) for r in results))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one TimerScheduler draining a backlog of due timers.",
    )
    parser.add_argument("-n", type=int, default=20_000, help="timers to fire (default 20000)")
    parser.add_argument(
        "--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT,
        help=f"the handler's max_concurrent (default {DEFAULT_MAX_CONCURRENT})",
    )
    parser.add_argument(
        "--redis-url", default=None,
        help="use this Redis instead of starting an embedded redis-server; INFO figures "
             "then include whatever else that server does",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs, each filled anew (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=120.0,
        help="seconds the drain may take before the run counts as failed (default 120)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", default=None,
        help="profile the scheduler's threads (cProfile) in the last run and save the "
             "merged stats to FILE; slows the drain, so its figures are not comparable",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.max_concurrent < 1 or args.repeat < 1 or args.timeout <= 0:
        parser.error("-n, --max-concurrent and --repeat must be >= 1, --timeout > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    server: RedisServer | None = None
    url: str = args.redis_url
    if url is None:
        server = RedisServer()
        url = server.start()
    stats_client = redis.Redis.from_url(url)
    try:
        redis_version = str(stats_client.info("server")["redis_version"])
        default = " (default)" if args.max_concurrent == DEFAULT_MAX_CONCURRENT else ""
        print(
            f"drain benchmark: N={args.n} timers on one topic, one TimerScheduler, "
            f"max_concurrent={args.max_concurrent}{default}, repeat={args.repeat}"
        )
        print(
            f"redis-server {redis_version} at {url} ({'embedded' if server else 'given'}); "
            f"redistimers {redistimers.__version__} from "
            f"{os.path.dirname(redistimers.__file__ or '?')}, redis-py {redis.__version__}, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
        )
        results: list[RunResult] = []
        for run in range(1, args.repeat + 1):
            profile = args.profile if run == args.repeat else None  # profile the last run
            result = run_once(
                url, stats_client, args.n, args.max_concurrent, args.timeout, profile
            )
            results.append(result)
            status = "ok" if result.ok else f"FAILED: {result.problem}"
            print(
                f"run {run}/{args.repeat}: fill {result.fill_s:.2f} s "
                f"({result.set_timer_per_s:.0f} set_timer/s); fired {result.fired} "
                f"on {result.handler_threads} handler threads; {status}"
            )
            print(describe("drain", result.drain))
            print(describe("settled", result.settled))
    finally:
        stats_client.close()
        if server is not None:
            server.close()

    ok = all(r.ok for r in results)
    summary = {
        "timers_per_s": median_of(results, "drain", "timers_per_s"),
        "round_trips_per_timer": median_of(results, "drain", "round_trips_per_timer"),
        "commands_per_timer": median_of(results, "drain", "commands_per_timer"),
        "redis_cpu_us_per_timer": median_of(results, "drain", "redis_cpu_us_per_timer"),
        "client_cpu_us_per_timer": median_of(results, "drain", "client_cpu_us_per_timer"),
        "settled_timers_per_s": median_of(results, "settled", "timers_per_s"),
        "settled_round_trips_per_timer": median_of(results, "settled", "round_trips_per_timer"),
        "settled_commands_per_timer": median_of(results, "settled", "commands_per_timer"),
        "settled_redis_cpu_us_per_timer": median_of(results, "settled", "redis_cpu_us_per_timer"),
        "set_timer_per_s": statistics.median(r.set_timer_per_s for r in results),
    }
    print(
        f"median of {len(results)}: {summary['timers_per_s']:.0f} timers/s, "
        f"{summary['round_trips_per_timer']:.4f} round trips/timer, "
        f"{summary['commands_per_timer']:.2f} commands/timer, "
        f"{summary['redis_cpu_us_per_timer']:.1f} us Redis CPU/timer, "
        f"{summary['client_cpu_us_per_timer']:.1f} us client CPU/timer "
        f"(settled: {summary['settled_timers_per_s']:.0f} timers/s, "
        f"{summary['settled_round_trips_per_timer']:.4f} round trips/timer); "
        f"fill {summary['set_timer_per_s']:.0f} set_timer/s; {'ok' if ok else 'FAILED'}"
    )
    print(json.dumps({
        "benchmark": "drain",
        "ok": ok,
        "n": args.n,
        "max_concurrent": args.max_concurrent,
        "repeat": args.repeat,
        "redis_version": redis_version,
        "redis_url": url if server is None else "embedded",
        "redistimers_path": os.path.dirname(redistimers.__file__ or "?"),
        "redis_py": redis.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "median": summary,
        "runs": [attrs.asdict(r) for r in results],
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

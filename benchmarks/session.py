"""What every case needs: the sizes of this run, the Redis probe, plans, scheduling through
an adapter, and worker processes started, awaited and stopped within time limits."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from . import procs
from .peers import Library
from .procs import CaseError, Info, Record, Scheduled, Worker
from .redisinfo import Probe

#: The payload of every timer: an int, a float and a 32-character string.
PAYLOAD: dict[str, Any] = {"n": 1, "x": 1.5, "s": "abcdefghijklmnopqrstuvwxyz012345"}
#: Handlers at once per worker (and per topic, where the library counts per topic) when
#: the library's info does not name its tuned value under one of these keys.
DEFAULT_CONCURRENCY = 100
CONCURRENCY_KEYS = ("concurrency", "max_concurrent", "workers", "max_workers", "threads")
#: Scheduling rate assumed before the schedule workload measured the library's own.
ASSUMED_RATE = 2_000.0
#: Seconds per timer to write a plan (us) and read it (the adapter): about 2 + 1.5 us.
PLAN_S_PER_TIMER = 4e-6
#: The environment variable that makes redistimers' adapter wait for this many replicas
#: on every write (TimerScheduler(min_replicas=...), replica_timeout 1 s): the
#: ``.replicas`` figures. The adapter reads the same name.
MIN_REPLICAS_ENV = "BENCH_REDISTIMERS_MIN_REPLICAS"
#: Topics per master of the spread workloads on a Cluster, unless --topics says otherwise.
TOPICS_PER_MASTER = 2

Timer = tuple[str, str, int]  # id, topic, due ms


@attrs.frozen
class Sizes:
    """Sizes and time limits of one run (full by default; QUICK below)."""

    drain: int = 20_000
    drain_limit: float = 90.0
    lateness_n: int = 1_000
    lateness_span: float = 10.0
    #: How long after the last due time a lateness case waits for the last timers.
    lateness_grace: float = 30.0
    busy_rate: int = 2_000
    busy_span: float = 30.0
    busy_topics: int = 10
    memory: int = 100_000
    worker_memory: int = 100_000
    #: Longest wait for a worker's RSS to settle after the timers were scheduled.
    rss_limit: float = 30.0
    idle_load_s: float = 30.0
    idle_topics: int = 100
    scale: tuple[int, int] = (1_000_000, 10_000_000)
    scale_due: int = 10_000
    #: Longest a library may spend filling pending timers for the scale case (all sizes).
    scale_fill_limit: float = 420.0
    #: Timers per schedule command while filling (one plan file each).
    scale_chunk: int = 500_000
    #: Time kept for the measurements at each scale size (a drain and a lateness plan).
    scale_measure: float = 30.0
    #: Longest one peer's workloads may take in all: a workload that would start later is
    #: skipped, and the scale fill gets no more than what is left. Ours (the subject, and
    #: the one that fills 10 million timers) has more.
    library_budget: float = 540.0
    ours_budget: float = 900.0
    #: The whole run's: later libraries get a fair share of what is left, at least
    #: min_budget each.
    run_budget: float = 3_600.0
    min_budget: float = 180.0
    schedule: int = 20_000
    crash_n: int = 2_000
    crash_span: float = 5.0
    crash_kill_after: float = 1.0
    crash_limit: float = 60.0
    #: Time for a worker to say it is ready, and to exit after SIGTERM.
    ready_limit: float = 60.0
    stop_limit: float = 30.0
    #: Quiet time before idle measurements, and after the last timer of a drain.
    settle: float = 1.0
    #: Least time between scheduling and the first due timer of a plan.
    lead: float = 1.0


QUICK = Sizes(
    drain=2_000, drain_limit=20.0, lateness_n=100, lateness_span=0.5, lateness_grace=5.0,
    busy_rate=400, busy_span=1.0, memory=5_000, worker_memory=5_000, rss_limit=3.0,
    idle_load_s=1.0,
    scale=(10_000, 50_000), scale_due=1_000, scale_fill_limit=30.0, scale_chunk=50_000,
    scale_measure=5.0, library_budget=300.0, ours_budget=300.0, run_budget=900.0,
    min_budget=60.0,
    schedule=2_000, crash_n=200, crash_span=1.0, crash_kill_after=0.3, crash_limit=15.0,
    ready_limit=30.0, stop_limit=15.0, settle=0.2, lead=0.3,
)


#: Ids and topics the harness makes need no escaping in JSON.
_PLAIN = re.compile(r"[\w.:-]*", re.ASCII)


def plan_json(timers: Sequence[Timer]) -> str:
    """The plan file's text: json.dump's, about 5 times faster when no string needs
    escaping (every plan of the harness; 1 million timers take 0.4 s)."""
    strings = {topic for _, topic, _ in timers}
    if all(map(_PLAIN.fullmatch, strings)) and all(_PLAIN.fullmatch(t[0]) for t in timers):
        body = ",".join([f'["{i}","{topic}",{int(due)}]' for i, topic, due in timers])
        return f'{{"timers":[{body}],"payload":{json.dumps(PAYLOAD)}}}'
    return json.dumps({"timers": timers, "payload": PAYLOAD}, separators=(",", ":"))


def now_ms() -> int:
    return int(time.time() * 1000)


@attrs.define
class Subject:
    """A library under test as this run knows it: how to run it, and what it said."""

    lib: Library
    info: Info | None = None
    unavailable: str | None = None
    #: Timers/s of its fastest way to schedule, once the schedule workload measured it.
    fast_rate: float | None = None
    #: Timers/s of one tuned worker draining a backlog, once the drain workload measured it
    #: (from the part that fired where it timed out).
    drain_rate: float | None = None
    #: Redis used_memory per pending timer, once the memory workload measured it.
    redis_bytes: float | None = None
    #: Seconds of each recent `schedule` command not spent scheduling (start-up, reading
    #: the plan, connecting), less the plan's share (PLAN_S_PER_TIMER): what `lead` adds.
    overheads: list[float] = attrs.Factory(list)

    @property
    def name(self) -> str:
        return self.lib.name

    @property
    def concurrency(self) -> int:
        tuned = self.info.raw.get("tuned", {}) if self.info else {}
        for key in CONCURRENCY_KEYS:
            value = tuned.get(key) if isinstance(tuned, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                return value
        return DEFAULT_CONCURRENCY

    @property
    def startup_s(self) -> float:
        return self.info.seconds if self.info else 1.0

    @property
    def overhead_s(self) -> float:
        """What a `schedule` command takes besides scheduling: the most of the last few
        (the machine may be busy), or three times `info`'s time before the first."""
        return max(self.overheads[-3:]) if self.overheads else 3 * self.startup_s


class Session:
    """One run: its Redis, its sizes, a folder for plans and out files, its workers."""

    def __init__(self, url: str, sizes: Sizes, folder: Path, log: Any = print,
                 topics: int | None = None) -> None:
        self.url = url
        self.sizes = sizes
        self.folder = folder
        self.probe = Probe(url)
        self.log = log
        self._serial = itertools.count(1)
        self._workers: list[Worker] = []
        #: When the current library's time budget ends (monotonic), if it has one.
        self.deadline: float | None = None
        #: Topics of the schedule, drain and drain-4 workloads (None: one on one server,
        #: TOPICS_PER_MASTER per master on a Cluster).
        self.topic_count = topics
        #: Every topic `topics` gave, with the master that holds it.
        self.topic_masters: dict[str, str] = {}
        #: The fewest replicas a master has: the .replicas figures need one.
        self.replicas = self.probe.replicas()

    def time_left(self) -> float:
        """Seconds left of the current library's budget (inf without one)."""
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    # -- topics and variants ---------------------------------------------------------------

    def topics(self, prefix: str) -> list[str]:
        """The topics a spread workload uses: `prefix` alone on one server (unless
        --topics), else `prefix`-0, -1, ... chosen on a Cluster so that the masters hold
        as many each (in turn: the first len(masters) topics are on distinct masters)."""
        masters = list(self.probe.masters)
        count = self.topic_count or (TOPICS_PER_MASTER * len(masters) if self.probe.cluster
                                     else 1)
        if count == 1 and not self.probe.cluster:
            chosen = [prefix]
        elif not self.probe.cluster:
            chosen = [f"{prefix}-{i}" for i in range(count)]
        else:
            per_master = -(-count // len(masters))
            held: dict[str, list[str]] = {name: [] for name in masters}
            for i in itertools.count():
                if all(len(topics) >= per_master for topics in held.values()):
                    break
                topic = f"{prefix}-{i}"
                # Every key of a topic is redistimers:{topic}:...: one slot, one master.
                topics = held[self.probe.master_of(f"redistimers:{{{topic}}}:due")]
                if len(topics) < per_master:
                    topics.append(topic)
            chosen = [held[name][j] for j in range(per_master) for name in masters][:count]
        for topic in chosen:
            self.topic_masters[topic] = self.probe.master_of(f"redistimers:{{{topic}}}:due")
        return chosen

    def with_replicas(self, subject: Subject) -> Subject:
        """The same library, its adapter waiting for one replica on every write."""
        lib = attrs.evolve(subject.lib, env=(*subject.lib.env, (MIN_REPLICAS_ENV, "1")))
        return attrs.evolve(subject, lib=lib, overheads=list(subject.overheads))

    # -- plans and scheduling -------------------------------------------------------------

    def plan(self, timers: Sequence[Timer]) -> Path:
        path = self.folder / f"plan-{next(self._serial)}.json"
        with open(path, "w") as f:
            f.write(plan_json(timers))
        return path

    def schedule(
        self, subject: Subject, timers: Sequence[Timer], *, threads: int = 1,
        bulk: bool = False, timeout: float | None = None,
    ) -> Scheduled:
        started = time.monotonic()
        path = self.plan(timers)
        try:
            scheduled = procs.schedule(
                subject.lib, self.url, path, threads=threads, bulk=bulk,
                timeout=timeout or self.schedule_limit(subject, len(timers)),
            )
        finally:
            path.unlink(missing_ok=True)
        wall = time.monotonic() - started
        subject.overheads.append(max(0.0, wall - scheduled.seconds
                                     - len(timers) * PLAN_S_PER_TIMER))
        return scheduled

    def schedule_fast(
        self, subject: Subject, timers: Sequence[Timer], timeout: float | None = None
    ) -> Scheduled:
        """Schedule the library's fastest way: its bulk API, else from 8 threads."""
        bulk = subject.info is not None and subject.info.bulk
        return self.schedule(subject, timers, threads=1 if bulk else 8, bulk=bulk,
                             timeout=timeout)

    def schedule_limit(self, subject: Subject, n: int) -> float:
        """Generous time for scheduling n timers: 10 times the expected, at least 60 s."""
        return max(60.0, 10 * (subject.startup_s + n / (subject.fast_rate or ASSUMED_RATE)))

    def drain_limit(self, subject: Subject, n: int, workers: int = 1) -> float:
        """Time limit for `workers` firing n timers: the full limit, unless the tuned drain
        showed that this library cannot make it anyway (even `workers` times as fast);
        then a quarter of it, enough to measure a part, so a slow library does not spend
        the full limit in every case."""
        limit = self.sizes.drain_limit
        rate = subject.drain_rate
        if rate is not None and 1.5 * n / max(rate * workers, 1e-9) > limit:
            return max(limit / 4, 10.0)
        return limit

    def lead(self, subject: Subject, n: int) -> float:
        """Seconds from now until a plan of n timers may start to fall due: time to write
        the plan, start the adapter and schedule them its fastest way (as the last
        commands took), with room to spare."""
        rate = subject.fast_rate or ASSUMED_RATE
        return (self.sizes.lead + 1.5 * subject.overhead_s
                + 2 * n * (1 / rate + PLAN_S_PER_TIMER))

    # -- workers ---------------------------------------------------------------------------

    def start_workers(
        self, subject: Subject, count: int, topics: Sequence[str], *, profile: str = "tuned",
        durable: bool = False, tag: str = "w",
    ) -> list[Worker]:
        workers = []
        for _ in range(count):
            name = f"{subject.name}-{tag}-{next(self._serial)}"
            worker = Worker(
                subject.lib, self.url, name, topics, concurrency=subject.concurrency,
                profile=profile, folder=self.folder, durable=durable,
            )
            self._workers.append(worker)
            workers.append(worker.start())
        return workers

    def wait_ready(self, workers: Sequence[Worker]) -> None:
        deadline = time.monotonic() + self.sizes.ready_limit
        names = [w.name for w in workers]
        while not all(self.probe.ready(names)):
            for worker in workers:
                if worker.exited() is not None:
                    raise worker.failure()
            if time.monotonic() > deadline:
                raise CaseError(f"worker not ready within {self.sizes.ready_limit:g} s")
            time.sleep(0.02)

    def wait_fired(
        self, workers: Sequence[Worker], target: int, limit_s: float, *,
        since: float | None = None, poll: float = 0.02,
    ) -> int:
        """Wait until the workers have reported `target` handler calls in all, or
        `limit_s` seconds after `since` (monotonic; default now). Returns the count."""
        deadline = (time.monotonic() if since is None else since) + limit_s
        names = [w.name for w in workers]
        while True:
            count = self.probe.progress(names)
            if count >= target or time.monotonic() > deadline:
                return count
            for worker in workers:
                if worker.exited() is not None:
                    raise worker.failure()
            time.sleep(poll)

    def wait_quiet(self, workers: Sequence[Worker], quiet_s: float, limit_s: float) -> None:
        """Wait until the workers' count has not changed for `quiet_s` (at most `limit_s`)."""
        names = [w.name for w in workers]
        deadline = time.monotonic() + limit_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = self.probe.progress(names)
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.05)

    def stop_workers(self, workers: Sequence[Worker]) -> list[Record]:
        """SIGTERM every worker at once, then gather their records."""
        records: list[Record] = []
        for worker in workers:
            worker.terminate()
        for worker in workers:
            records += worker.stop(self.sizes.stop_limit)
        return records

    def cleanup(self) -> None:
        """Kill every worker this session started that may still run (end of a case)."""
        for worker in self._workers:
            worker.kill()
        self._workers.clear()

    def reset(self) -> None:
        self.probe.reset()

    def close(self) -> None:
        self.cleanup()
        self.probe.close()


class TimedOut(CaseError):
    """Not every timer fired within the time limit."""

    def __init__(self, limit_s: float, count: int, n: int) -> None:
        self.limit_s, self.count, self.n = limit_s, count, n
        super().__init__(
            f"timed out after {limit_s:g} s: {count:,} of {n:,} fired (~{self.rate:,.0f}/s)"
        )

    @property
    def rate(self) -> float:
        return self.count / self.limit_s


def timed_out(limit_s: float, count: int, n: int) -> TimedOut:
    return TimedOut(limit_s, count, n)


def spread(prefix: str, topics: Sequence[str], n: int, start_ms: float,
           span_s: float) -> list[Timer]:
    """n timers due evenly from `start_ms` over `span_s`, over the topics in turn."""
    step = span_s * 1000 / n
    return [(f"{prefix}{i}", topics[i % len(topics)], math.ceil(start_ms + i * step))
            for i in range(n)]

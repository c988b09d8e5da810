"""Workloads about capacity and cost at rest: schedule rates (and the Redis CPU they cost,
and with min_replicas=1 where there are replicas), Redis memory per pending timer, worker
memory per pending timer, and the load of an idle worker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from . import procs
from .figures import Cell, Result
from .peers import OURS
from .procs import CaseError, Unable
from .redisinfo import Delta
from .session import Session, Subject, Timer, now_ms

HOUR_MS = 3_600_000


def _pending(prefix: str, topics: str | Sequence[str], n: int,
             uuids: bool = False) -> list[Timer]:
    """n timers due about an hour from now (1 ms apart), over the topics in turn."""
    names = [topics] if isinstance(topics, str) else list(topics)
    due = now_ms() + HOUR_MS
    return [(str(uuid.uuid4()) if uuids else f"{prefix}{i}", names[i % len(names)], due + i)
            for i in range(n)]


#: Each way to schedule: its figure, threads, bulk, and the figure of its Redis CPU.
WAYS = (("one", 1, False, "schedule.redis_cpu"), ("threads", 8, False, None),
        ("bulk", 1, True, "schedule.bulk_redis_cpu"))
REPLICA_KEYS = ["schedule.one.replicas", "schedule.bulk.replicas"]
NO_REPLICAS = "no replicas here: one redis-server (run --redis cluster or sentinel)"
OURS_ONLY = "redistimers only"


def _schedule_once(s: Session, subject: Subject, n: int, topics: Sequence[str], threads: int,
                   bulk: bool) -> tuple[float, Delta, float]:
    """Schedule n timers into an empty Redis: timers/s, and what Redis did from the
    command's start to its end (start-up and connections included)."""
    s.reset()
    before = s.probe.snapshot()
    scheduled = s.schedule(subject, _pending("s", topics, n), threads=threads, bulk=bulk)
    delta = s.probe.snapshot().since(before)
    if scheduled.n != n:
        raise CaseError(f"scheduled {scheduled.n:,} of {n:,}")
    return scheduled.rate, delta, scheduled.seconds


def _raw(n: int, seconds: float, delta: Delta) -> dict[str, object]:
    return {"n": n, "seconds": seconds, "redis_cpu_s": delta.cpu_s,
            "redis_cpu_s_by_master": delta.cpu_by_master, "commands": delta.commands,
            "reads": delta.reads,
            "commands_per_timer": {name: round(count / n, 4) for name, count in
                                   sorted(delta.calls.items(), key=lambda kv: -kv[1])[:8]}}


def schedule(s: Session, subject: Subject, result: Result) -> None:
    """Timers/s of one thread, 8 threads and the bulk API, each into an empty Redis, with
    the Redis CPU they cost; then, for redistimers where there are replicas, one thread
    and the bulk API again with min_replicas=1."""
    n = s.sizes.schedule
    topics = s.topics("schedule")
    fastest = 0.0
    for key, threads, bulk, cpu_key in WAYS:
        try:
            rate, delta, seconds = _schedule_once(s, subject, n, topics, threads, bulk)
        except CaseError as exc:
            text = "no bulk API" if bulk and isinstance(exc, Unable) else str(exc)
            result.fail([f"schedule.{key}", *([cpu_key] if cpu_key else [])], text)
            continue
        result.cells[f"schedule.{key}"] = Cell(rate)
        if cpu_key:
            result.cells[cpu_key] = Cell(delta.cpu_s * 1e6 / n)
        result.raw[key] = _raw(n, seconds, delta)
        if threads > 1 or bulk:
            fastest = max(fastest, rate)
    if fastest:
        subject.fast_rate = fastest
    if subject.name != OURS:
        result.fail(REPLICA_KEYS, OURS_ONLY)
        return
    if not s.replicas:
        result.fail(REPLICA_KEYS, NO_REPLICAS)
        return
    variant = s.with_replicas(subject)
    for key, threads, bulk, _ in WAYS:
        if threads > 1:
            continue
        try:
            rate, delta, seconds = _schedule_once(s, variant, n, topics, threads, bulk)
        except CaseError as exc:
            result.cells[f"schedule.{key}.replicas"] = Cell(None, str(exc))
            continue
        result.cells[f"schedule.{key}.replicas"] = Cell(rate)
        result.raw[f"{key}.replicas"] = _raw(n, seconds, delta)


def memory(s: Session, subject: Subject, result: Result) -> None:
    """Redis used_memory growth per pending timer (ids: 36-character uuid4 strings)."""
    s.reset()
    n = s.sizes.memory
    before = s.probe.used_memory()
    s.schedule_fast(subject, _pending("m", "memory", n, uuids=True))
    after = s.probe.used_memory()
    result.cells["memory.bytes"] = Cell((after - before) / n)
    subject.redis_bytes = (after - before) / n
    result.raw.update(n=n, used_memory_before=before, used_memory_after=after)


def _settled_rss(worker: procs.Worker, limit_s: float, interval: float) -> tuple[int, bool]:
    """The worker's RSS once three samples `interval` apart agree within 0.5% (True), or
    the last sample after `limit_s` (False)."""
    deadline = time.monotonic() + limit_s
    samples = [procs.tree_rss_kib(worker.pid)]
    while time.monotonic() < deadline:
        time.sleep(interval)
        if worker.exited() is not None:
            raise worker.failure()
        samples.append(procs.tree_rss_kib(worker.pid))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= 0.005 * max(last):
            return samples[-1], True
    return samples[-1], False


def worker_memory(s: Session, subject: Subject, result: Result) -> None:
    """A running worker's RSS (with its child processes) before and after n timers an hour
    away were scheduled: what it keeps in memory per pending timer."""
    s.reset()
    n = s.sizes.worker_memory
    (worker,) = s.start_workers(subject, 1, ["later"], tag="rss")
    s.wait_ready([worker])
    interval = max(0.1, s.sizes.settle)
    before, _ = _settled_rss(worker, s.sizes.rss_limit, interval)
    s.schedule_fast(subject, _pending("r", "later", n))
    after, settled = _settled_rss(worker, s.sizes.rss_limit, interval)
    # Its records are of no use here, and a worker holding many timers in memory may take
    # long to shut down (Celery re-queues every one): kill it.
    worker.kill()
    note = "" if settled else f"(still changing {s.sizes.rss_limit:g} s after scheduling)"
    result.cells["worker_memory.bytes"] = Cell((after - before) * 1024 / n, note)
    result.raw.update(n=n, rss_kib_before=before, rss_kib_after=after, settled=settled)


def idle_load(s: Session, subject: Subject, result: Result) -> None:
    """Commands per second Redis runs for one idle worker of 1 and of many topics."""
    for key, count in (("one", 1), ("many", s.sizes.idle_topics)):
        s.reset()
        topics = [f"idle-{i}" for i in range(count)]
        (worker,) = s.start_workers(subject, 1, topics, tag=f"idle{count}")
        s.wait_ready([worker])
        time.sleep(2 * s.sizes.settle)  # past its start-up
        before = s.probe.snapshot()
        time.sleep(s.sizes.idle_load_s)
        delta = s.probe.snapshot().since(before)
        if worker.exited() is not None:
            raise worker.failure()
        s.stop_workers([worker])
        result.cells[f"idle_load.{key}"] = Cell(delta.commands / s.sizes.idle_load_s)
        result.raw[key] = {"topics": count, "seconds": s.sizes.idle_load_s,
                           "calls": delta.calls, "reads": delta.reads}

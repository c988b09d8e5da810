"""Workloads that fire a backlog: drain (one worker, tuned and default settings, with what
it costs Redis, and with min_replicas=1 where there are replicas), drain-4 (four worker
processes) and two workers (duplicates and gaps).

The drains use Session.topics("drain"): the one topic "drain" on one server, topics spread
over the masters on a Cluster (one worker handles them all)."""

from __future__ import annotations

import time

import attrs

from . import stats
from .figures import Cell, Result
from .peers import OURS
from .procs import CaseError
from .redisinfo import Delta
from .session import Session, Subject, TimedOut, Timer, now_ms, timed_out

TOPIC = "drain"
NOT_SAFE = "not safe across processes"


def _top(delta: Delta, n: int, count: int = 12) -> dict[str, float]:
    """The commands Redis ran most, per timer."""
    ranked = sorted(delta.calls.items(), key=lambda kv: -kv[1])[:count]
    return {name: round(calls / n, 4) for name, calls in ranked}


@attrs.frozen
class Drained:
    rate: float
    delta: Delta
    client_round_trips: int | None
    first_fire_s: float
    duplicates: int


def _backlog(s: Session, subject: Subject, profile: str) -> Drained:
    """Schedule n timers already due, then start one worker and time it until the last
    fired; Redis's counters from before the worker started until the last acks."""
    s.reset()
    n = s.sizes.drain
    limit = s.drain_limit(subject, n)
    due = now_ms()
    topics = s.topics(TOPIC)
    timers: list[Timer] = [(f"d{i}", topics[i % len(topics)], due) for i in range(n)]
    s.schedule_fast(subject, timers)
    before = s.probe.snapshot()
    (worker,) = s.start_workers(subject, 1, topics, profile=profile)
    count = s.wait_fired([worker], n, limit, since=worker.started)
    if count < n:
        raise timed_out(limit, count, n)
    time.sleep(s.sizes.settle)  # the acks of the last timers belong to the drain
    delta = s.probe.snapshot().since(before)
    fired = stats.fired(s.stop_workers([worker]), (t[0] for t in timers))
    if fired.missed:
        raise CaseError(f"{count:,} handler calls but {fired.missed:,} of {n:,} never fired")
    trips = worker.extra.get("client_round_trips")
    return Drained(
        rate=stats.rate(fired.first.values()),
        delta=delta,
        client_round_trips=trips if isinstance(trips, int) else None,
        first_fire_s=(min(fired.first.values()) - worker.started_ms) / 1000,
        duplicates=fired.duplicates,
    )


TUNED_KEYS = ["drain.rate", "drain.round_trips", "drain.client_round_trips",
              "drain.commands", "drain.redis_cpu"]
REPLICA_KEYS = ["drain.rate.replicas", "drain.redis_cpu.replicas"]
NO_REPLICAS = "no replicas here: one redis-server (run --redis cluster or sentinel)"


def _raw(drained: Drained, n: int) -> dict[str, object]:
    delta = drained.delta
    return {
        "rate": drained.rate, "reads": delta.reads, "commands": delta.commands,
        "redis_cpu_s": delta.cpu_s, "redis_cpu_s_by_master": delta.cpu_by_master,
        "commands_per_timer": _top(delta, n),
        "client_round_trips": drained.client_round_trips,
        "first_fire_s_after_worker_start": drained.first_fire_s,
        "duplicates": drained.duplicates,
    }


def drain(s: Session, subject: Subject, result: Result) -> None:
    """The tuned profile (with what it costs Redis), then the default one; either may fail
    on its own. The tuned rate sets the time limits of the later cases (Session.drain_limit)."""
    n = s.sizes.drain
    try:
        tuned = _backlog(s, subject, "tuned")
    except TimedOut as exc:
        subject.drain_rate = exc.rate
        result.fail(TUNED_KEYS, str(exc))
    except CaseError as exc:
        result.fail(TUNED_KEYS, str(exc))
    else:
        subject.drain_rate = tuned.rate
        delta = tuned.delta
        result.cells["drain.rate"] = Cell(tuned.rate)
        result.cells["drain.round_trips"] = Cell(delta.reads / n)
        result.cells["drain.commands"] = Cell(delta.commands / n)
        result.cells["drain.redis_cpu"] = Cell(delta.cpu_s * 1e6 / n)
        result.cells["drain.client_round_trips"] = (
            Cell(tuned.client_round_trips / n, "(whole worker life)")
            if tuned.client_round_trips is not None
            else Cell(None, "not counted by this adapter")
        )
        result.raw["tuned"] = _raw(tuned, n)
    result.raw["topics"] = {topic: s.topic_masters.get(topic) for topic in s.topics(TOPIC)}
    s.cleanup()
    try:
        default = _backlog(s, subject, "default")
    except CaseError as exc:
        result.fail(["drain.default_rate"], str(exc))
    else:
        result.cells["drain.default_rate"] = Cell(default.rate)
        result.raw["default"] = {"rate": default.rate, "duplicates": default.duplicates,
                                 "first_fire_s_after_worker_start": default.first_fire_s}
    s.cleanup()
    if subject.name != OURS:
        result.fail(REPLICA_KEYS, "redistimers only")
    elif not s.replicas:
        result.fail(REPLICA_KEYS, NO_REPLICAS)
    else:
        try:
            replicated = _backlog(s, s.with_replicas(subject), "tuned")
        except CaseError as exc:
            result.fail(REPLICA_KEYS, str(exc))
        else:
            result.cells["drain.rate.replicas"] = Cell(replicated.rate)
            result.cells["drain.redis_cpu.replicas"] = Cell(replicated.delta.cpu_s * 1e6 / n)
            result.raw["replicas"] = _raw(replicated, n)


def _gated(s: Session, subject: Subject, count: int, tag: str) -> tuple[stats.Fired, Result]:
    """n timers all due at one moment a little ahead, with `count` workers started and
    ready before they are scheduled; wait until every timer fired and the workers fall
    quiet."""
    s.reset()
    n = s.sizes.drain
    limit = s.drain_limit(subject, n, count)
    topics = s.topics(TOPIC)
    workers = s.start_workers(subject, count, topics, tag=tag)
    s.wait_ready(workers)
    due = now_ms() + int(s.lead(subject, n) * 1000)
    timers: list[Timer] = [(f"g{i}", topics[i % len(topics)], due) for i in range(n)]
    scheduled = s.schedule_fast(subject, timers)
    out = Result()
    if scheduled.done_ms > due:
        out.raw["late_schedule_s"] = (scheduled.done_ms - due) / 1000
    due_monotonic = time.monotonic() + (due - now_ms()) / 1000
    got = s.wait_fired(workers, n, limit, since=due_monotonic)
    s.wait_quiet(workers, 2 * s.sizes.settle, s.sizes.stop_limit)  # late duplicates show
    fired = stats.fired(s.stop_workers(workers), (t[0] for t in timers))
    out.raw.update(fired=got, distinct=fired.distinct, duplicates=fired.duplicates,
                   missed=fired.missed)
    if fired.missed:
        out.cells["rate"] = Cell(None, f"timed out after {limit:g} s: "
                                       f"{fired.distinct:,} of {n:,} fired")
    else:
        note = (f"(scheduling ended {out.raw['late_schedule_s']:.1f} s after the timers "
                "fell due)" if "late_schedule_s" in out.raw else "")
        out.cells["rate"] = Cell(stats.rate(fired.first.values()), note)
    return fired, out


def drain_4(s: Session, subject: Subject, result: Result) -> None:
    if subject.info is not None and not subject.info.multi_worker_safe:
        result.fail(["drain4.rate", "drain4.duplicates", "drain4.missed"], NOT_SAFE)
        return
    fired, out = _gated(s, subject, 4, "d4")
    result.cells["drain4.rate"] = out.cells["rate"]
    result.cells["drain4.duplicates"] = Cell(fired.duplicates)
    result.cells["drain4.missed"] = Cell(fired.missed)
    result.raw.update(out.raw)


def two_workers(s: Session, subject: Subject, result: Result) -> None:
    if subject.info is not None and not subject.info.multi_worker_safe:
        result.fail(["two.duplicates", "two.never"], NOT_SAFE)
        return
    fired, out = _gated(s, subject, 2, "two")
    result.cells["two.duplicates"] = Cell(fired.duplicates)
    result.cells["two.never"] = Cell(fired.missed)
    result.raw.update(out.raw)

"""Scale: a drain and idle lateness with an empty Redis, then with many pending timers not
yet due on the same topic (filled the library's fastest way, in chunks, adding up from one
size to the next). The cost should stay flat, so each figure also says its ratio to the
empty-Redis one.

Filling is what takes long, so it has one time budget per library (Sizes.scale_fill_limit)
for all sizes together. A size is not even started when the library's measured scheduling
rate says it cannot be filled in what is left of the budget, or when the Redis memory it
would take (from the memory workload's bytes per timer) is more than this machine has free:
its cells then say so ("fill would take ~N min ..."). A fill that turns out slower than
estimated is given up after the chunk that shows it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from . import stats
from .figures import Cell, Result
from .procs import CaseError
from .session import Session, Subject, Timer, now_ms, timed_out
from .workloads_timing import lateness_run

TOPIC = "scale"
DAY_MS = 86_400_000
STATS = ("rate", "p50", "p99")
#: Share of the machine's available memory a fill may take in Redis.
MEMORY_SHARE = 0.6


class CannotFill(CaseError):
    """This size (and every larger one) cannot be filled within the limits."""


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def available_memory() -> int | None:
    """MemAvailable of this machine, bytes (None where /proc/meminfo is not there)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fill(s: Session, subject: Subject, have: int, want: int, limit: float) -> float:
    """Add pending timers (due in a day, over an hour) until `want`; returns timers/s.
    Gives up, saying so, when the library's rate cannot reach `want` in `limit` seconds."""
    started = time.monotonic()
    due = now_ms() + DAY_MS
    done = 0
    while have + done < want:
        elapsed = time.monotonic() - started
        chunk = min(s.sizes.scale_chunk, want - have - done)
        timers: list[Timer] = [
            (f"p{have + done + i}", TOPIC, due + (have + done + i) % 3_600_000)
            for i in range(chunk)
        ]
        try:
            s.schedule_fast(subject, timers, timeout=max(1.0, limit - elapsed))
        except CaseError as exc:
            raise CannotFill(f"cannot fill {want:,} pending timers in {_minutes(limit)} "
                             f"({have + done:,} filled): {exc}") from exc
        done += chunk
        elapsed = time.monotonic() - started
        rate = done / elapsed
        left = want - have - done
        if left and elapsed + left / rate > limit:
            raise CannotFill(
                f"fill would take ~{_minutes(elapsed + left / rate)} at {rate:,.0f} timers/s "
                f"(limit {_minutes(limit)}; {have + done:,} filled)"
            )
    return done / max(time.monotonic() - started, 1e-9)


def why_not(s: Session, subject: Subject, have: int, want: int, rate: float | None,
            budget_left: float) -> str | None:
    """Why filling from `have` to `want` pending timers is not worth starting, if so."""
    if rate:
        need = (want - have) / rate
        if need > budget_left:
            return (f"fill would take ~{_minutes(need)} at {rate:,.0f} timers/s "
                    f"({_minutes(budget_left)} left of the fill time limit)")
    free = available_memory()
    if subject.redis_bytes and free is not None:
        need_bytes = (want - have) * subject.redis_bytes
        if need_bytes > MEMORY_SHARE * free:
            return (f"would take ~{need_bytes / 2**30:.1f} GiB of Redis memory "
                    f"({subject.redis_bytes:,.0f} bytes/timer; {free / 2**30:.1f} GiB free)")
    return None


def measure(s: Session, subject: Subject, key: str) -> tuple[float, stats.Lateness, str]:
    """Drain scale_due timers already due with a new worker, then, with it idle, the idle
    lateness plan."""
    n = s.sizes.scale_due
    limit = s.drain_limit(subject, n)
    due = now_ms()
    timers: list[Timer] = [(f"{key}-d{i}", TOPIC, due) for i in range(n)]
    s.schedule_fast(subject, timers)
    (worker,) = s.start_workers(subject, 1, [TOPIC], tag=f"scale-{key}")
    count = s.wait_fired([worker], n, limit, since=worker.started)
    if count < n:
        raise timed_out(limit, count, n)
    time.sleep(s.sizes.settle)
    sizes = s.sizes
    lateness, note, records = lateness_run(
        s, subject, worker, f"{key}-l", [TOPIC], sizes.lateness_n, sizes.lateness_span,
        already=count,
    )
    drained = stats.fired(records, (t[0] for t in timers))
    return stats.rate(drained.first.values()), lateness, note


def scale(s: Session, subject: Subject, result: Result) -> None:
    s.reset()
    steps = (("empty", 0), ("small", s.sizes.scale[0]), ("large", s.sizes.scale[1]))
    have = 0
    # What the library's budget leaves, less the measurements at every size.
    reserve = len(steps) * s.sizes.scale_measure
    budget = max(0.0, min(s.sizes.scale_fill_limit, s.time_left() - reserve))
    result.raw["fill_budget_s"] = budget
    spent = 0.0
    rate = subject.fast_rate  # the schedule workload's, until a fill measures its own
    base: dict[str, float] = {}
    for index, (key, size) in enumerate(steps):
        keys = [f"scale.{key}.{stat}" for stat in STATS]
        try:
            if size > have:
                reason = why_not(s, subject, have, size, rate, budget - spent)
                if reason:
                    raise CannotFill(reason)
                started = time.monotonic()
                rate = fill(s, subject, have, size, budget - spent)
                took = time.monotonic() - started
                spent += took
                result.raw[f"{key}_fill"] = {"timers": size - have, "rate": rate,
                                             "seconds": took}
                have = size
            result.raw[f"{key}_used_memory"] = s.probe.used_memory()
            measured, lateness, note = measure(s, subject, key)
        except CannotFill as exc:
            for later, _ in steps[index:]:
                result.fail([f"scale.{later}.{stat}" for stat in STATS],
                            str(exc) if later == key else f"{size:,} pending not reached")
            result.raw[f"{key}_skipped"] = str(exc)
            return
        except CaseError as exc:
            result.fail(keys, str(exc))
            continue
        finally:
            s.cleanup()
        figures = {"rate": measured, "p50": lateness.quantile(0.5),
                   "p99": lateness.quantile(0.99)}
        for stat, value in figures.items():
            if math.isinf(value):
                result.cells[f"scale.{key}.{stat}"] = Cell(None, "not fired")
                continue
            if key == "empty":
                base[stat] = value
                text = f"({note})" if note else ""
            else:
                ratio = value / base[stat] if value > 0 and base.get(stat, 0) > 0 else None
                text = f"({ratio:.2f}x empty)" if ratio is not None else ""
            result.cells[f"scale.{key}.{stat}"] = Cell(value, text)
        result.raw[key] = {"pending": size, **figures, "note": note,
                           "lateness": lateness.summary()}

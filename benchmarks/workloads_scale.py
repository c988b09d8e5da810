"""Scale: a drain and idle lateness with an empty Redis, then with many pending timers not
yet due on the same topic (filled in bulk, in chunks, adding up from one size to the next).
The cost should stay flat, so each figure also says its ratio to the empty-Redis one."""

from __future__ import annotations

import time

from . import stats
from .figures import Cell, Result
from .procs import CaseError
from .session import Session, Subject, Timer, now_ms, timed_out
from .workloads_timing import lateness_run

TOPIC = "scale"
DAY_MS = 86_400_000


def fill(s: Session, subject: Subject, have: int, want: int) -> float:
    """Add pending timers (due in a day, over an hour) until `want`; returns timers/s.
    Gives up, saying so, when the library's rate cannot reach `want` in the time limit."""
    limit = s.sizes.scale_fill_limit
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
            raise CaseError(f"cannot fill {want:,} pending timers in {limit:g} s "
                            f"({have + done:,} filled): {exc}") from exc
        done += chunk
        elapsed = time.monotonic() - started
        rate = done / elapsed
        if have + done < want and elapsed + (want - have - done) / rate > limit:
            raise CaseError(f"cannot fill {want:,} pending timers in {limit:g} s: "
                            f"{rate:,.0f} timers/s ({have + done:,} filled)")
    return done / max(time.monotonic() - started, 1e-9)


def measure(s: Session, subject: Subject, key: str) -> tuple[float, stats.Lateness, str]:
    """Drain scale_due timers already due with a new worker, then, with it idle, the idle
    lateness plan."""
    n = s.sizes.scale_due
    due = now_ms()
    timers: list[Timer] = [(f"{key}-d{i}", TOPIC, due) for i in range(n)]
    s.schedule_fast(subject, timers)
    (worker,) = s.start_workers(subject, 1, [TOPIC], tag=f"scale-{key}")
    count = s.wait_fired([worker], n, s.sizes.drain_limit, since=worker.started)
    if count < n:
        raise timed_out(s.sizes.drain_limit, count, n)
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
    base: dict[str, float] = {}
    for key, size in steps:
        keys = [f"scale.{key}.{stat}" for stat in ("rate", "p50", "p99")]
        try:
            if size > have:
                result.raw[f"{key}_fill_rate"] = fill(s, subject, have, size)
                have = size
            result.raw[f"{key}_used_memory"] = s.probe.used_memory()
            rate, lateness, note = measure(s, subject, key)
        except CaseError as exc:
            result.fail(keys, str(exc))
            if "cannot fill" in str(exc):
                for later_key, _ in steps[steps.index((key, size)) + 1:]:
                    result.fail([f"scale.{later_key}.{stat}" for stat in ("rate", "p50", "p99")],
                                f"cannot fill: {size:,} could not be filled")
                return
            continue
        figures = {"rate": rate, "p50": lateness.quantile(0.5), "p99": lateness.quantile(0.99)}
        for stat, value in figures.items():
            if value == float("inf"):
                result.cells[f"scale.{key}.{stat}"] = Cell(None, "not fired")
                continue
            if key == "empty":
                base[stat] = value
                text = f"({note})" if note else ""
            else:
                ratio = value / base[stat] if base.get(stat) else None
                text = f"({ratio:.2f}x empty)" if ratio is not None else ""
            result.cells[f"scale.{key}.{stat}"] = Cell(value, text)
        result.raw[key] = {"pending": size, **figures, "note": note,
                           "lateness": lateness.summary()}

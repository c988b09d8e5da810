"""Workloads about when timers fire: idle and busy lateness, and crash recovery."""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import stats
from .figures import Cell, Result, lateness_cells
from .procs import Record, Worker
from .session import Session, Subject, Timer, now_ms, spread


def lateness_run(
    s: Session, subject: Subject, worker: Worker, prefix: str, topics: Sequence[str],
    n: int, span_s: float, already: int = 0,
) -> tuple[stats.Lateness, str, list[Record]]:
    """With `worker` idle and ready (having fired `already` timers), schedule n timers due
    evenly over `span_s` from a little ahead, wait for them and stop the worker. Returns
    their lateness, a note when scheduling ran past the first due time, and every record
    of the worker."""
    start = now_ms() + int(s.lead(subject, n) * 1000)
    timers = spread(prefix, topics, n, start, span_s)
    scheduled = s.schedule_fast(subject, timers)
    grace = s.sizes.lateness_grace
    until_last = (start - now_ms()) / 1000 + span_s
    s.wait_fired([worker], already + n, until_last + grace, poll=0.1)
    records = s.stop_workers([worker])
    due = {timer_id: float(due_ms) for timer_id, _topic, due_ms in timers}
    fired = stats.fired(records, due)
    note = ""
    if scheduled.done_ms > start:
        note = f"scheduling ended {(scheduled.done_ms - start) / 1000:.1f} s after the first due"
    return stats.Lateness.of(due, fired.first), note, records


def _lateness(s: Session, subject: Subject, result: Result, prefix: str,
              topics: Sequence[str], n: int, span_s: float) -> None:
    s.reset()
    (worker,) = s.start_workers(subject, 1, topics, tag=prefix)
    s.wait_ready([worker])
    time.sleep(s.sizes.settle)  # idle, not starting
    lateness, note, _ = lateness_run(s, subject, worker, f"{prefix}-", topics, n, span_s)
    result.cells.update(lateness_cells(prefix, lateness, s.sizes.lateness_grace, note))
    result.raw.update(
        n=n, summary=lateness.summary(), missing=lateness.missing, note=note,
        cdf=stats.cdf_points(lateness.values, n),
    )


def idle_lateness(s: Session, subject: Subject, result: Result) -> None:
    sizes = s.sizes
    _lateness(s, subject, result, "idle", ["idle"], sizes.lateness_n, sizes.lateness_span)


def busy_lateness(s: Session, subject: Subject, result: Result) -> None:
    sizes = s.sizes
    topics = [f"busy-{i}" for i in range(sizes.busy_topics)]
    n = int(sizes.busy_rate * sizes.busy_span)
    _lateness(s, subject, result, "busy", topics, n, sizes.busy_span)


def crash(s: Session, subject: Subject, result: Result) -> None:
    """n timers due over the next few seconds; the only worker is SIGKILLed (with its
    process group) a little after the first fell due, and a new one started at once."""
    s.reset()
    sizes = s.sizes
    n = sizes.crash_n
    (first,) = s.start_workers(subject, 1, ["crash"], durable=True, tag="crash-a")
    s.wait_ready([first])
    start = now_ms() + int(s.lead(subject, n) * 1000)
    timers: list[Timer] = spread("c", ["crash"], n, start, sizes.crash_span)
    ids = [t[0] for t in timers]
    s.schedule_fast(subject, timers)
    time.sleep(max(0.0, (start + sizes.crash_kill_after * 1000 - now_ms()) / 1000))
    first.kill()
    killed_ms = time.time() * 1000
    (second,) = s.start_workers(subject, 1, ["crash"], durable=True, tag="crash-b")
    deadline = time.monotonic() + sizes.crash_limit
    while time.monotonic() < deadline:
        fired = stats.fired(first.durable_records() + second.durable_records(), ids)
        if fired.distinct >= n:
            break
        if second.exited() is not None:
            raise second.failure()
        time.sleep(0.1)
    s.wait_quiet([second], 2 * sizes.settle, sizes.stop_limit)  # late duplicates show
    fired = stats.fired(first.durable_records() + s.stop_workers([second]), ids)
    before_kill = sum(1 for fired_ms in fired.first.values() if fired_ms <= killed_ms)
    result.cells["crash.never"] = Cell(fired.missed)
    result.cells["crash.duplicates"] = Cell(fired.duplicates)
    if fired.missed:  # the last one never fired
        result.cells["crash.last_s"] = Cell(
            None, f"{fired.missed:,} never fired within {sizes.crash_limit:g} s")
    elif fired.first:
        result.cells["crash.last_s"] = Cell((max(fired.first.values()) - killed_ms) / 1000)
    result.raw.update(
        n=n, fired_before_kill=before_kill, due_before_kill=sum(
            1 for t in timers if t[2] <= killed_ms),
        never=fired.missed, duplicates=fired.duplicates,
    )

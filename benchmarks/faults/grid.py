"""Periodic timers against their grid: occurrences fired, fired off the grid, skipped
(a grid point after the timer was set, in the observed window, that never fired), and
stale (an occurrence due before the timer was even set)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import attrs
from croniter import croniter

from .counts import Key
from .ledger import Record

#: How far a due time may be from a grid point and still be on it, ms (scores keep µs).
ON_GRID_MS = 1.0
#: An `every` grid starts one period after the set_timers call, which the harness knows
#: only to within the call's duration: skipped points are matched this loosely.
EVERY_SLACK_MS = 250.0


@attrs.frozen
class Periodic:
    """A periodic timer and when (real clock) the set_timers call that set it began."""

    key: Key
    source: str
    set_ms: float
    every_s: float | None = None
    cron: str | None = None


@attrs.define
class GridCounts:
    timers: int = 0
    fires: int = 0
    off_grid: int = 0
    skipped: int = 0
    stale: int = 0
    expected: int = 0

    def add(self, other: GridCounts) -> None:
        for field in attrs.fields(GridCounts):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def cron_points(expr: str, after_ms: float, until_ms: float) -> list[float]:
    """The cron expression's times (UTC) in (after_ms, until_ms]."""
    start = dt.datetime.fromtimestamp(after_ms / 1000, dt.timezone.utc)
    it = croniter(expr, start)
    points: list[float] = []
    while True:
        point = float(it.get_next(float)) * 1000
        if point > until_ms:
            return points
        points.append(point)


def on_cron_grid(expr: str, due_ms: float) -> bool:
    nxt = cron_points(expr, due_ms - ON_GRID_MS - 1, due_ms + ON_GRID_MS)
    return any(abs(point - due_ms) <= ON_GRID_MS for point in nxt)


def analyse(timer: Periodic, dues: Iterable[float], until_ms: float) -> GridCounts:
    """One periodic timer: `dues` are the due times of its completed occurrences."""
    fired = sorted({due for due in dues if due <= until_ms})
    counts = GridCounts(timers=1, fires=len(fired))
    counts.stale = sum(1 for due in fired if due < timer.set_ms - ON_GRID_MS)
    if timer.cron is not None:
        expected = cron_points(timer.cron, timer.set_ms, until_ms)
        counts.off_grid = sum(1 for due in fired if not on_cron_grid(timer.cron, due))
        slack = ON_GRID_MS
    else:
        assert timer.every_s is not None
        every = timer.every_s * 1000
        first = timer.set_ms + every
        expected = [first + k * every for k in range(int((until_ms - first) // every) + 1)
                    if first <= until_ms]
        if fired:
            phase = [(due - fired[0]) % every for due in fired]
            counts.off_grid = sum(1 for p in phase if min(p, every - p) > ON_GRID_MS)
        slack = EVERY_SLACK_MS
    counts.expected = len(expected)
    counts.skipped = sum(1 for point in expected
                         if not any(abs(point - due) <= slack for due in fired))
    return counts


def summarise(timers: Iterable[Periodic], records: Iterable[Record],
              until_ms: float) -> dict[tuple[str, str], GridCounts]:
    """GridCounts per (source, "cron" or "every")."""
    dues: dict[Key, list[float]] = {}
    for record in records:
        if record.kind == "E":
            dues.setdefault((record.topic, record.timer_id), []).append(record.due_ms)
    result: dict[tuple[str, str], GridCounts] = {}
    for timer in timers:
        kind = "cron" if timer.cron is not None else "every"
        total = result.setdefault((timer.source, kind), GridCounts())
        total.add(analyse(timer, dues.get(timer.key, []), until_ms))
    return result

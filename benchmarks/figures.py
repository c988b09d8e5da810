"""The report's rows (one per workload figure) and cells (a number, or why there is none)."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from .stats import Lateness

Better = Literal["higher", "lower"] | None


@attrs.frozen
class Cell:
    """One library's value of one figure: a number, maybe with a note, or only a text
    saying why there is no number ("timed out after 120 s: 3,412 of 20,000 fired")."""

    value: float | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None and math.isfinite(self.value)

    def render(self, digits: int) -> str:
        if self.value is None:
            return self.text or "—"
        if math.isnan(self.value):
            number = "n/a"
        elif math.isinf(self.value):
            number = "∞"
        else:
            number = f"{self.value:,.{digits}f}"
        return f"{number} {self.text}" if self.text else number

    def to_json(self) -> dict[str, Any]:
        value = self.value
        if value is not None and not math.isfinite(value):
            value = None  # JSON has no inf or nan; the text says why
        return {"value": value, "text": self.text}


@attrs.frozen
class Figure:
    key: str
    workload: str
    #: A format string over the Sizes fields, e.g. "drain: {drain:,} due, 1 worker".
    label: str
    #: Which way is better, for the ratio column; None: no ratio (counts, minimums).
    better: Better = None
    digits: int = 0
    #: Measured with min_replicas=1 (redistimers only): shown only where the masters
    #: have replicas (a Cluster, Sentinel), not on one redis-server.
    replicas: bool = False


def _lateness(prefix: str, workload: str, what: str) -> list[Figure]:
    return [
        Figure(f"{prefix}.min", workload, f"{what}: min, ms", None, 2),
        Figure(f"{prefix}.p50", workload, f"{what}: p50, ms", "lower", 2),
        Figure(f"{prefix}.p95", workload, f"{what}: p95, ms", "lower", 2),
        Figure(f"{prefix}.p99", workload, f"{what}: p99, ms", "lower", 2),
        Figure(f"{prefix}.max", workload, f"{what}: max, ms", "lower", 2),
        Figure(f"{prefix}.early", workload, f"{what}: fired early (count)", None),
    ]


def _scale() -> list[Figure]:
    sizes = (("empty", "empty Redis"), ("small", "{scale[0]:,} pending"),
             ("large", "{scale[1]:,} pending"))
    rows = [Figure(f"scale.{key}.rate", "scale", f"scale, {what}: drain {{scale_due:,}}, timers/s",
                   "higher") for key, what in sizes]
    for stat in ("p50", "p99"):
        rows += [Figure(f"scale.{key}.{stat}", "scale",
                        f"scale, {what}: idle lateness {stat}, ms", "lower", 2)
                 for key, what in sizes]
    return rows


FIGURES: list[Figure] = [
    Figure("schedule.one", "schedule", "schedule from 1 thread, timers/s", "higher"),
    Figure("schedule.threads", "schedule", "schedule from 8 threads, timers/s", "higher"),
    Figure("schedule.bulk", "schedule", "schedule with the bulk API, timers/s", "higher"),
    Figure("schedule.redis_cpu", "schedule", "Redis CPU per timer scheduled from 1 thread, µs",
           "lower", 1),
    Figure("schedule.bulk_redis_cpu", "schedule",
           "Redis CPU per timer scheduled with the bulk API, µs", "lower", 1),
    Figure("schedule.one.replicas", "schedule",
           "schedule from 1 thread, min_replicas=1, timers/s", "higher", replicas=True),
    Figure("schedule.bulk.replicas", "schedule",
           "schedule with the bulk API, min_replicas=1, timers/s", "higher", replicas=True),
    Figure("drain.rate", "drain", "drain: {drain:,} due, 1 worker, timers/s", "higher"),
    Figure("drain.default_rate", "drain", "drain with default settings, timers/s", "higher"),
    Figure("drain.round_trips", "drain",
           "round trips per timer in drain (server: total_reads_processed)", "lower", 3),
    Figure("drain.client_round_trips", "drain",
           "round trips per timer in drain (counted by the client)", "lower", 3),
    Figure("drain.commands", "drain", "Redis commands per timer in drain", "lower", 2),
    Figure("drain.redis_cpu", "drain", "Redis CPU per timer in drain, µs", "lower", 1),
    Figure("drain.rate.replicas", "drain", "drain, min_replicas=1, timers/s", "higher",
           replicas=True),
    Figure("drain.redis_cpu.replicas", "drain",
           "Redis CPU per timer in drain, min_replicas=1, µs", "lower", 1, replicas=True),
    Figure("drain4.rate", "drain-4", "drain-4: {drain:,} due, 4 workers, timers/s", "higher"),
    Figure("drain4.duplicates", "drain-4", "drain-4: fired more than once"),
    Figure("drain4.missed", "drain-4", "drain-4: missed"),
    Figure("two.duplicates", "two-workers", "two workers: fired more than once"),
    Figure("two.never", "two-workers", "two workers: never fired"),
    *_lateness("idle", "idle-lateness",
               "idle lateness ({lateness_n:,} over {lateness_span:g} s)"),
    *_lateness("busy", "busy-lateness",
               "busy lateness ({busy_rate:,}/s for {busy_span:g} s, {busy_topics} topics)"),
    Figure("memory.bytes", "memory", "Redis memory per pending timer, bytes", "lower"),
    Figure("worker_memory.bytes", "worker-memory", "worker RSS per pending timer, bytes",
           "lower"),
    Figure("idle_load.one", "idle-load", "idle load, 1 topic, commands/s", "lower", 2),
    Figure("idle_load.many", "idle-load", "idle load, {idle_topics} topics, commands/s",
           "lower", 2),
    Figure("crash.never", "crash", "crash: never fired within {crash_limit:g} s"),
    Figure("crash.duplicates", "crash", "crash: fired more than once"),
    Figure("crash.last_s", "crash", "crash: last timer fired, s after the kill", "lower", 2),
    *_scale(),
]
BY_KEY = {figure.key: figure for figure in FIGURES}
#: Workloads in the order they run (schedule first: later cases use its rates).
WORKLOADS: list[str] = list(dict.fromkeys(figure.workload for figure in FIGURES))
#: Names of figures that are part of another workload, accepted by --workloads.
ALIASES = {"round-trips": "drain", "redis-cost": "drain", "lateness": "idle-lateness"}


def keys_of(workload: str) -> list[str]:
    return [figure.key for figure in FIGURES if figure.workload == workload]


def lateness_cells(prefix: str, lateness: Lateness, grace_s: float,
                   note: str = "") -> dict[str, Cell]:
    """The six lateness figures; those that land on a timer never fired say so."""
    unfired = f"{lateness.missing:,} of {lateness.n:,} not fired {grace_s:g} s after the last due"
    if lateness.missing:
        note = f"{note}; {unfired}" if note else unfired
    cells = {}
    for stat, value in lateness.summary().items():
        if math.isinf(value):
            cells[f"{prefix}.{stat}"] = Cell(None, unfired)
        else:  # the note once, on the first row
            cells[f"{prefix}.{stat}"] = Cell(value, f"({note})" if note and not cells else "")
    return cells


@attrs.define
class Result:
    """What one case of one library produced: its cells, and raw data for the JSON."""

    cells: dict[str, Cell] = attrs.Factory(dict)
    raw: dict[str, Any] = attrs.Factory(dict)

    def fail(self, keys: list[str], text: str) -> None:
        """Give every figure in `keys` that has no cell yet this text instead."""
        for key in keys:
            self.cells.setdefault(key, Cell(None, text))

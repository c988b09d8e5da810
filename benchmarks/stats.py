"""Figures from handler records: rates, lateness percentiles, duplicates and gaps."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import attrs

from .procs import Record


@attrs.frozen
class Fired:
    """Handler calls of one case, against the timers it scheduled."""

    #: Fired ms of each timer's first call, by id (timers of the plan only).
    first: dict[str, float]
    #: Timers of the plan called more than once.
    duplicates: int
    #: Timers of the plan never called.
    missed: int
    #: Calls of ids that were not in the plan (should be 0).
    strangers: int

    @property
    def distinct(self) -> int:
        return len(self.first)


def fired(records: Iterable[Record], ids: Iterable[str]) -> Fired:
    wanted = set(ids)
    calls: Counter[str] = Counter()
    first: dict[str, float] = {}
    strangers = 0
    for timer_id, _topic, fired_ms in records:
        if timer_id not in wanted:
            strangers += 1
            continue
        calls[timer_id] += 1
        if timer_id not in first or fired_ms < first[timer_id]:
            first[timer_id] = fired_ms
    return Fired(
        first=first,
        duplicates=sum(1 for count in calls.values() if count > 1),
        missed=len(wanted) - len(first),
        strangers=strangers,
    )


def rate(times_ms: Iterable[float]) -> float:
    """Timers per second from the first fire to the last."""
    times = list(times_ms)
    if len(times) < 2:
        return float("nan")
    span = (max(times) - min(times)) / 1000
    return len(times) / span if span > 0 else float("inf")


@attrs.frozen
class Lateness:
    """fired - due (ms) of the timers of a plan; those never fired count as infinitely late."""

    #: Sorted lateness of the timers that fired.
    values: list[float]
    n: int

    @classmethod
    def of(cls, due: Mapping[str, float], first: Mapping[str, float]) -> Lateness:
        values = sorted(first[timer_id] - due_ms for timer_id, due_ms in due.items()
                        if timer_id in first)
        return cls(values, len(due))

    @property
    def missing(self) -> int:
        return self.n - len(self.values)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile over all n timers (inf where it lands on an unfired one)."""
        if self.n == 0:
            return float("nan")
        rank = max(1, math.ceil(q * self.n))
        return self.values[rank - 1] if rank <= len(self.values) else math.inf

    @property
    def early(self) -> int:
        return sum(1 for value in self.values if value < 0)

    def summary(self) -> dict[str, float]:
        return {
            "min": self.values[0] if self.values else math.inf,
            "p50": self.quantile(0.50),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
            "max": self.quantile(1.0),
            "early": float(self.early),
        }


def cdf_points(values: Sequence[float], n: int, points: int = 400) -> list[list[float]]:
    """At most `points` [lateness, fraction fired by then] pairs of a sorted list."""
    if not values:
        return []
    step = max(1, len(values) // points)
    picked = list(range(0, len(values), step))
    if picked[-1] != len(values) - 1:
        picked.append(len(values) - 1)
    return [[round(values[i], 3), (i + 1) / n] for i in picked]

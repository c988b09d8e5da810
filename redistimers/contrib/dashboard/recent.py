"""What each topic delivered in the last few minutes, and how late deliveries started,
from the live workers' counters: the dashboard remembers the totals it saw at each look,
and subtracts earlier looks from later ones (per worker, so that a restarted worker
counts from zero)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Sequence

import attrs

from ...metrics import LATENESS_BUCKETS
from ...models import WorkerInfo

#: How far back "recent" reaches, in seconds.
RECENT_S = 300.0

#: A worker's totals at one look: topic -> (delivered, failed).
Totals = dict[str, tuple[int, int]]


@attrs.frozen
class Lateness:
    """How late the deliveries between two looks started (bucket bounds: "at most")."""

    #: Seconds before the latest look that this stretch ended.
    ago_s: float
    deliveries: int
    p50_s: float
    p99_s: float


@attrs.frozen
class Recent:
    """Handler calls that ended, and those that failed, per topic, in the window (of the
    workers older than it, over the `seconds` the dashboard has looked), and the lateness
    of the deliveries between each pair of looks."""

    delivered: dict[str, int]
    failed: dict[str, int]
    seconds: float
    lateness: list[Lateness] = attrs.Factory(list)


def bucket_percentile(counts: Sequence[int], fraction: float) -> float:
    """The upper bound of the bucket holding the `fraction` rank (inf past the last)."""
    rank = math.ceil(fraction * sum(counts))
    seen = 0
    for bound, count in zip((*LATENESS_BUCKETS, math.inf), counts, strict=False):
        seen += count
        if seen >= rank:
            return bound
    return math.inf


def _lateness(looks: Sequence[tuple[float, dict[str, tuple[int, ...]]]]) -> list[Lateness]:
    """The lateness between each pair of consecutive looks, of the workers in both."""
    points = []
    latest = looks[-1][0] if looks else 0.0
    for (_, before), (when, after) in itertools.pairwise(looks):
        total = [0] * (len(LATENESS_BUCKETS) + 1)
        for worker_id, counts in after.items():
            earlier = before.get(worker_id)
            if earlier is not None and not earlier:  # nothing delivered yet at that look
                earlier = (0,) * len(counts)
            if earlier is None or len(earlier) != len(counts) or len(counts) != len(total):
                continue
            delta = [b - a for a, b in zip(earlier, counts, strict=True)]
            if min(delta, default=0) < 0:  # it restarted meanwhile
                continue
            total = [t + d for t, d in zip(total, delta, strict=True)]
        if sum(total):
            points.append(Lateness(latest - when, sum(total), bucket_percentile(total, 0.5),
                                   bucket_percentile(total, 0.99)))
    return points


def _totals(worker: WorkerInfo) -> Totals:
    return {
        topic: (count, worker.failed_per_topic.get(topic, 0))
        for topic, count in worker.delivered_per_topic.items()
    }


class RecentDeliveries:
    """The looks of the last RECENT_S seconds (thread-safe: pages render in threads)."""

    def __init__(self, window_s: float = RECENT_S) -> None:
        self._window_s = window_s
        self._looks: deque[tuple[float, dict[str, Totals]]] = deque()
        self._late: deque[tuple[float, dict[str, tuple[int, ...]]]] = deque()
        self._lock = threading.Lock()

    def observe(self, workers: Sequence[WorkerInfo], now: float | None = None) -> Recent:
        """Remember what `workers` say now; what each topic did since the window began."""
        now = time.monotonic() if now is None else now
        look = {w.worker_id: _totals(w) for w in workers}
        with self._lock:
            while self._looks and self._looks[0][0] < now - self._window_s:
                self._looks.popleft()
                self._late.popleft()
            self._looks.append((now, look))
            self._late.append((now, {w.worker_id: w.lateness_counts for w in workers}))
            lateness = _lateness(list(self._late))
            began = self._looks[0][0]
            first_seen: dict[str, Totals] = {}
            for _when, earlier in self._looks:
                for worker_id, totals in earlier.items():
                    first_seen.setdefault(worker_id, totals)
        started_after = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=self._window_s)
        delivered: dict[str, int] = {}
        failed: dict[str, int] = {}
        for worker in workers:
            current = look[worker.worker_id]
            # A worker started within the window counts from zero; an older one from its
            # first look within the window (until the dashboard has looked for a while,
            # that is less than the whole window).
            base = {} if worker.started_at >= started_after else first_seen[worker.worker_id]
            for topic, (done, bad) in current.items():
                was_done, was_bad = base.get(topic, (0, 0))
                delivered[topic] = delivered.get(topic, 0) + max(0, done - was_done)
                failed[topic] = failed.get(topic, 0) + max(0, bad - was_bad)
        return Recent(delivered, failed, now - began, lateness)

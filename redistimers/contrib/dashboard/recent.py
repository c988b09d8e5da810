"""What each topic delivered in the last few minutes, from the live workers' counters:
the dashboard remembers the totals it saw at each look, and subtracts the oldest look of
the window from the newest (per worker, so that a restarted worker counts from zero)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from collections.abc import Sequence

import attrs

from ...models import WorkerInfo

#: How far back "recent" reaches, in seconds.
RECENT_S = 300.0

#: A worker's totals at one look: topic -> (delivered, failed).
Totals = dict[str, tuple[int, int]]


@attrs.frozen
class Recent:
    """Handler calls that ended, and those that failed, per topic, in the window (of the
    workers older than it, over the `seconds` the dashboard has looked)."""

    delivered: dict[str, int]
    failed: dict[str, int]
    seconds: float


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
        self._lock = threading.Lock()

    def observe(self, workers: Sequence[WorkerInfo], now: float | None = None) -> Recent:
        """Remember what `workers` say now; what each topic did since the window began."""
        now = time.monotonic() if now is None else now
        look = {w.worker_id: _totals(w) for w in workers}
        with self._lock:
            while self._looks and self._looks[0][0] < now - self._window_s:
                self._looks.popleft()
            self._looks.append((now, look))
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
        return Recent(delivered, failed, now - began)

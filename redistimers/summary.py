"""One log line a minute of what a busy worker delivered; nothing while it is idle."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from .metrics import Window

log = logging.getLogger("redistimers.summary")

#: Seconds between summary lines.
SUMMARY_INTERVAL = 60.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of sorted `values` lie (nearest rank)."""
    return values[min(len(values) - 1, max(0, math.ceil(fraction * len(values)) - 1))]


class MinuteSummary:
    """Logs, at INFO, the totals of the deliveries of each minute that had some."""

    def __init__(
        self, take_windows: Callable[[], list[Window]], interval: float = SUMMARY_INTERVAL
    ) -> None:
        self._take_windows = take_windows
        self._interval = interval
        self._began = time.monotonic()

    def tick(self, final: bool = False) -> None:
        """Log the summary once a minute has passed (or, `final`, of what is left)."""
        now = time.monotonic()
        if not final and now - self._began < self._interval:
            return
        windows, began, self._began = self._take_windows(), self._began, now
        totals = {
            name: sum(getattr(w, name) for w in windows)
            for name in ("delivered", "succeeded", "retried", "dead_lettered", "failed")
        }
        if not totals["delivered"]:
            return
        lateness = sorted(value for w in windows for value in w.lateness)
        p50, p99 = percentile(lateness, 0.5) * 1000, percentile(lateness, 0.99) * 1000
        log.info(
            "last %.0fs: %s delivered (%s succeeded, %s to retry, %s dead-lettered, %s "
            "failed), late p50 %.1f ms, p99 %.1f ms",
            now - began, *(f"{count:,}" for count in totals.values()), p50, p99,
            extra={**totals, "late_p50_ms": round(p50, 3), "late_p99_ms": round(p99, 3)},
        )

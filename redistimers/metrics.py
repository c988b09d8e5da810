"""Counts of what a scheduler did, for `TimerScheduler.metrics()`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import attrs

#: Outcome kinds -> the counter they add to.
_OUTCOME_COUNTERS = {
    "ack": "succeeded",
    "reject": "rejected",
    "retry": "retried",
    "bury": "dead_lettered",
    "release": "released",
}


@attrs.frozen
class Metrics:
    """Counts since the scheduler was created, and what runs right now."""

    #: Timers this scheduler leased for delivery.
    claimed: int = 0
    #: Handlers that returned (the timer was removed, or moved to its next occurrence).
    succeeded: int = 0
    #: Deliveries to be tried again (a handler raised, or raised RetryTimer).
    retried: int = 0
    dead_lettered: int = 0
    #: Handlers that raised RejectTimer.
    rejected: int = 0
    #: Leases handed back at stop(), of timers claimed but not started.
    released: int = 0
    lease_renewals: int = 0
    #: Outcomes that Redis ignored because the timer was re-set, cancelled or re-claimed
    #: meanwhile (its fencing token was stale).
    stale_acks: int = 0
    #: Leases found lost while their handler still ran.
    leases_lost: int = 0
    #: Suspects delivered alone: timers whose previous delivery never reported back (its
    #: worker died or hung past the lease), run with no other handler beside them.
    isolated: int = 0
    #: Redis calls that failed (connection loss, timeouts, a server still loading, a full
    #: Redis).
    redis_errors: int = 0
    #: Claims and calls that found Redis over its maxmemory (claims go on; new timers are
    #: refused with RedisFullError).
    redis_full: int = 0
    #: Handlers running now, per topic this scheduler handles.
    in_flight: Mapping[str, int] = attrs.field(factory=dict)


class MetricsCounter:
    """The mutable counts behind `Metrics`. Written by one thread at a time: the poller
    thread, or the caller of run_pending (which cannot run while the poller does)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def outcome(self, kind: str) -> None:
        self.counts[_OUTCOME_COUNTERS[kind]] += 1

    def add(self, name: str, count: int = 1) -> None:
        self.counts[name] += count

    def snapshot(
        self, redis_errors: int, redis_full: int, in_flight: Mapping[str, int],
        others: Sequence[MetricsCounter] = (),
    ) -> Metrics:
        """The counts, with those of `others` (the counters of other pollers) added."""
        counts = Counter(self.counts)
        for other in others:
            counts.update(other.counts)
        return Metrics(
            **{name: counts[name] for name in _NAMES},
            redis_errors=redis_errors,
            redis_full=redis_full,
            in_flight=dict(in_flight),
        )


_NAMES = tuple(
    name for name in attrs.fields_dict(Metrics)
    if name not in ("redis_errors", "redis_full", "in_flight")
)

"""Counts of what a scheduler did, for `TimerScheduler.metrics()`, the worker's record in
Redis, its minute summaries and Prometheus."""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Mapping, Sequence

import attrs

#: Outcome kinds -> the counter they add to (also the `outcome` of logs and Prometheus).
OUTCOME_NAMES = {
    "ack": "succeeded",
    "reject": "rejected",
    "retry": "retried",
    "bury": "dead_lettered",
    "release": "released",
}

#: Upper bounds (seconds) of the buckets of handler durations and of lateness: from a
#: millisecond, what an idle worker achieves, to minutes, a backlog or a slow handler.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 300.0)
LATENESS_BUCKETS = DURATION_BUCKETS

#: Lateness values kept per minute window for its percentiles (a uniform sample beyond).
_WINDOW_SAMPLE = 2000


@attrs.frozen
class Histogram:
    """Observations counted into buckets, as Prometheus histograms are."""

    #: Upper bounds of the buckets, in seconds; a last bucket (+Inf) follows them.
    bounds: tuple[float, ...]
    #: Observations per bucket (not cumulative), one more than `bounds`.
    counts: tuple[int, ...]
    #: Sum of the observations, in seconds.
    total: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, +Inf last."""
        running, pairs = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


@attrs.frozen
class TopicMetrics:
    """What a scheduler's handlers of one topic did since it was created."""

    topic: str
    #: Handler calls that ended, whatever their outcome.
    delivered: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    rejected: int = 0
    released: int = 0
    #: Handler calls that raised an exception (retried or dead-lettered after it).
    failed: int = 0
    #: How long handlers ran.
    handler_seconds: Histogram = Histogram(DURATION_BUCKETS, (0,) * (len(DURATION_BUCKETS) + 1))
    #: How late deliveries started, after their due time by Redis's clock.
    lateness_seconds: Histogram = Histogram(
        LATENESS_BUCKETS, (0,) * (len(LATENESS_BUCKETS) + 1)
    )


@attrs.frozen
class Metrics:
    """Counts since the scheduler was created, and what runs right now."""

    #: Timers this scheduler leased for delivery.
    claimed: int = 0
    #: Handler calls that ended, whatever their outcome.
    delivered: int = 0
    #: Handlers that returned (the timer was removed, or moved to its next occurrence).
    succeeded: int = 0
    #: Deliveries to be tried again (a handler raised, or raised RetryTimer).
    retried: int = 0
    dead_lettered: int = 0
    #: Handlers that raised RejectTimer.
    rejected: int = 0
    #: Handlers that raised an exception (retried or dead-lettered after it).
    failed: int = 0
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
    #: Times this scheduler's worker threads found Redis unreachable or stalled.
    redis_outages: int = 0
    #: Claims and calls that found Redis over its maxmemory (claims go on; new timers are
    #: refused with RedisFullError).
    redis_full: int = 0
    #: Handlers running now, per topic this scheduler handles.
    in_flight: Mapping[str, int] = attrs.field(factory=dict)
    #: The counts and histograms of each topic this scheduler handles.
    topics: Mapping[str, TopicMetrics] = attrs.field(factory=dict)


_bucket = bisect.bisect_left
_random = random.random

#: Outcome kinds in the order of the count lists below.
_KINDS = tuple(OUTCOME_NAMES)
_KIND_INDEX = {kind: index for index, kind in enumerate(_KINDS)}
_RELEASE = _KIND_INDEX["release"]


class _TopicCounts:
    """The mutable counts of one topic (lists and ints: counted for every delivery, by the
    thread that also claims and settles, so each costs little)."""

    __slots__ = ("duration_sum", "durations", "failed", "lateness", "lateness_sum", "outcomes")

    def __init__(self) -> None:
        self.outcomes = [0] * len(_KINDS)
        self.failed = 0
        self.durations = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.lateness = [0] * (len(LATENESS_BUCKETS) + 1)
        self.lateness_sum = 0.0

    def add(self, other: _TopicCounts) -> None:
        self.outcomes = [a + b for a, b in zip(self.outcomes, other.outcomes, strict=True)]
        self.failed += other.failed
        self.durations = [a + b for a, b in zip(self.durations, other.durations, strict=True)]
        self.duration_sum += other.duration_sum
        self.lateness = [a + b for a, b in zip(self.lateness, other.lateness, strict=True)]
        self.lateness_sum += other.lateness_sum

    def by_name(self) -> dict[str, int]:
        """The outcome counts by name, with ``delivered`` and ``failed``."""
        named = {OUTCOME_NAMES[kind]: count for kind, count in zip(_KINDS, self.outcomes,
                                                                    strict=True)}
        named["delivered"] = sum(self.outcomes) - self.outcomes[_RELEASE]
        named["failed"] = self.failed
        return named


@attrs.frozen
class Window:
    """What the handlers did in a stretch of time, for the minute summaries."""

    delivered: int
    succeeded: int
    retried: int
    dead_lettered: int
    failed: int
    #: A uniform sample of the deliveries' lateness, in seconds.
    lateness: list[float]


class _WindowCounts:
    """The mutable counts of the current window."""

    __slots__ = ("failed", "outcomes", "sample", "seen")

    def __init__(self) -> None:
        self.outcomes = [0] * len(_KINDS)
        self.failed = 0
        self.seen = 0
        self.sample: list[float] = []


class MetricsCounter:
    """The mutable counts behind `Metrics`. Written by one thread at a time: the poller
    thread, or the caller of run_pending (which cannot run while the poller does)."""

    def __init__(self) -> None:
        #: Counts other than the outcomes of deliveries (claimed, lease_renewals, ...).
        self.counts: Counter[str] = Counter()
        self.by_topic: dict[str, _TopicCounts] = {}
        self._window = _WindowCounts()

    def finished(
        self, topic: str, kind: str, failed: bool, lateness_s: float, duration_s: float
    ) -> None:
        """Count a delivery whose handler ended (or that was handed back: "release")."""
        index = _KIND_INDEX[kind]
        per_topic = self.by_topic.get(topic)
        if per_topic is None:
            per_topic = self.by_topic[topic] = _TopicCounts()
        per_topic.outcomes[index] += 1
        if index == _RELEASE:  # no handler ran
            return
        window = self._window
        window.outcomes[index] += 1
        if failed:
            per_topic.failed += 1
            window.failed += 1
        per_topic.durations[_bucket(DURATION_BUCKETS, duration_s)] += 1
        per_topic.duration_sum += duration_s
        per_topic.lateness[_bucket(LATENESS_BUCKETS, lateness_s)] += 1
        per_topic.lateness_sum += lateness_s
        seen = window.seen = window.seen + 1
        if seen <= _WINDOW_SAMPLE:
            window.sample.append(lateness_s)
        else:  # reservoir sampling: every delivery of the window equally likely kept
            slot = int(_random() * seen)
            if slot < _WINDOW_SAMPLE:
                window.sample[slot] = lateness_s

    def add(self, name: str, count: int = 1) -> None:
        self.counts[name] += count

    def take_window(self) -> Window:
        """What was delivered since the last call, and start a new window. Called from
        another thread: a delivery counted at the same moment may fall in either window."""
        window, self._window = self._window, _WindowCounts()
        named = dict(zip((OUTCOME_NAMES[kind] for kind in _KINDS), window.outcomes,
                         strict=True))
        return Window(
            delivered=window.seen, succeeded=named["succeeded"], retried=named["retried"],
            dead_lettered=named["dead_lettered"], failed=window.failed,
            lateness=window.sample,
        )

    def snapshot(
        self, redis_errors: int, redis_outages: int, redis_full: int,
        in_flight: Mapping[str, int], others: Sequence[MetricsCounter] = (),
    ) -> Metrics:
        """The counts, with those of `others` (the counters of other pollers) added."""
        # Read while the poller threads write: each dict is copied at once (one C call,
        # which no thread interrupts) before it is iterated.
        counts: Counter[str] = Counter()
        by_topic: dict[str, _TopicCounts] = {}
        for counter in (self, *others):
            counts.update(dict(counter.counts))
            for topic, per_topic in list(counter.by_topic.items()):
                by_topic.setdefault(topic, _TopicCounts()).add(per_topic)
        for per_topic in by_topic.values():
            counts.update(per_topic.by_name())
        topics = {topic: _topic_metrics(topic, c) for topic, c in sorted(by_topic.items())}
        return Metrics(
            **{name: counts[name] for name in _NAMES},
            redis_errors=redis_errors,
            redis_outages=redis_outages,
            redis_full=redis_full,
            in_flight=dict(in_flight),
            topics=topics,
        )


def _topic_metrics(topic: str, counts: _TopicCounts) -> TopicMetrics:
    named = counts.by_name()
    return TopicMetrics(
        topic,
        **{name: named[name] for name in _TOPIC_NAMES},
        handler_seconds=Histogram(DURATION_BUCKETS, tuple(counts.durations), counts.duration_sum),
        lateness_seconds=Histogram(LATENESS_BUCKETS, tuple(counts.lateness), counts.lateness_sum),
    )


_NAMES = tuple(
    name for name in attrs.fields_dict(Metrics)
    if name not in ("redis_errors", "redis_outages", "redis_full", "in_flight", "topics")
)
_TOPIC_NAMES = tuple(
    name for name in attrs.fields_dict(TopicMetrics)
    if name not in ("topic", "handler_seconds", "lateness_seconds")
)

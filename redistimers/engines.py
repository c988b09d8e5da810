"""The pollers of one started scheduler: one per Redis Cluster master its topics live on,
so that a slow or failing master stalls only its own topics; one on a single server.

Each poller of a Cluster has its own outage tracker (named after its master) and its own
counts, so that one master's outage is logged once as that master's, and nothing is
counted by two threads at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs

from .metrics import MetricsCounter
from .outage import OutageTracker
from .poller import Poller


@attrs.frozen
class Engine:
    """One poller, with what it reports to."""

    poller: Poller
    tracker: OutageTracker
    metrics: MetricsCounter


class Engines:
    """Pollers started and stopped together, each for its own topics."""

    def __init__(self, engines: Sequence[Engine]) -> None:
        self.engines = list(engines)
        self._by_topic = {
            topic: engine.poller for engine in self.engines for topic in engine.poller.topics
        }

    def start(self) -> None:
        for engine in self.engines:
            engine.poller.start()

    def wake(self, topic: str | None = None) -> None:
        """Claim `topic` (None: every topic) at its poller's next turn."""
        if topic is None:
            for engine in self.engines:
                engine.poller.wake(None)
        elif topic in self._by_topic:
            self._by_topic[topic].wake(topic)

    def stop(self, timeout: float) -> bool:
        """Stop every poller within `timeout` seconds in all; True when all drained."""
        deadline = time.monotonic() + max(0.0, timeout)
        for engine in self.engines:
            engine.poller.request_stop()
        drained = True
        for engine in self.engines:
            drained = engine.poller.stop(max(0.0, deadline - time.monotonic())) and drained
        return drained

    def stop_now(self) -> None:
        for engine in self.engines:
            engine.poller.stop_now()

    @property
    def alive(self) -> bool:
        return all(engine.poller.alive for engine in self.engines)

    @property
    def running_handlers(self) -> int:
        return sum(engine.poller.running_handlers for engine in self.engines)

    @property
    def in_flight(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for engine in self.engines:
            counts.update(engine.poller.in_flight)
        return counts

"""The threaded engine: one poller thread claims due timers of every topic, a thread pool
runs their handlers, and the poller settles outcomes and renews leases in the same
pipelined round trips.

The poller thread owns all bookkeeping (slots, running deliveries, next claim times);
handler threads only append outcomes to a deque and set the wake event, and other
threads ask for claims through `wake()`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import Any

from . import defaults
from .delivery import RELEASE, Hooks, Outcome, deliver, failure_outcome, log_extra, settle
from .metrics import MetricsCounter
from .outage import OutageTracker
from .retry import RetryPolicy
from .router import HandlerSpec
from .store import Batch, ClaimedTimer, ClaimResult, TimerStore
from .wakeup import WakeListener
from .workers import HandlerPool

log = logging.getLogger("redistimers.poller")

_ALL_TOPICS = None


class _Topic:
    """The poller's view of one topic."""

    __slots__ = ("in_flight", "lease_renew_s", "next_claim_at", "spec")

    def __init__(self, spec: HandlerSpec) -> None:
        self.spec = spec
        self.in_flight = 0
        self.next_claim_at = 0.0  # monotonic time of the next claim; 0: at once
        self.lease_renew_s = spec.lease_ttl * defaults.LEASE_RENEW_FRACTION

    @property
    def free(self) -> int:
        return self.spec.max_concurrent - self.in_flight


class _Running:
    """A delivery whose handler has not reported back yet."""

    __slots__ = ("lease_lost", "renew_at", "timer")

    def __init__(self, timer: ClaimedTimer, renew_at: float) -> None:
        self.timer = timer
        self.renew_at = renew_at
        self.lease_lost = False


class Poller:
    """Claims, runs and settles the timers of `specs` until stopped."""

    def __init__(
        self,
        store: TimerStore,
        specs: Mapping[str, HandlerSpec],
        tracker: OutageTracker,
        *,
        default_retry: RetryPolicy,
        max_poll_interval: float,
        hooks: Hooks,
        metrics: MetricsCounter,
    ) -> None:
        self._store = store
        self._hooks = hooks
        self._metrics = metrics
        self._topics = {topic: _Topic(spec) for topic, spec in specs.items()}
        self._tracker = tracker
        self._default_retry = default_retry
        self._max_poll_interval = max_poll_interval
        self._running: dict[tuple[str, str, str], _Running] = {}
        self._settling: dict[tuple[str, str], ClaimedTimer] = {}  # outcomes of this turn
        self._next_renewal = math.inf
        self._completed: deque[tuple[ClaimedTimer, Outcome]] = deque()
        self._woken: deque[str | None] = deque()
        self._wake = threading.Event()
        self._sleeping = False  # the poller waits on _wake (see _sleep)
        self._stopping = threading.Event()
        self._abort = threading.Event()  # give up on Redis and running handlers now
        self._exited = threading.Event()
        self._pool = HandlerPool(max(1, sum(spec.max_concurrent for spec in specs.values())))
        self._thread = threading.Thread(target=self._run, name="redistimers-poller", daemon=True)
        channels = {store.keys(topic).wake: topic for topic in specs}
        self._listener = (
            WakeListener(store.client, channels, self.wake, tracker) if specs else None
        )

    # -- control, from any thread ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if self._listener is not None:
            self._listener.start()

    def wake(self, topic: str | None = _ALL_TOPICS) -> None:
        """Claim `topic` (None: every topic) at the poller's next turn."""
        self._woken.append(topic)
        self._wake.set()

    def stop(self, timeout: float) -> bool:
        """Stop claiming, let running handlers finish for up to `timeout` seconds, settle
        their outcomes, and stop the threads. True when every handler finished in time.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.signal_stop()  # no more claims, so no more use for wake-ups
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            self._wake.set()
            self._thread.join(0.1)
        drained = not self._thread.is_alive() and not self._running
        if not drained:
            log.warning(
                "stopped with %d handler(s) still running after %.1fs: each timer is settled "
                "when its handler ends, or delivered again once its lease expires",
                len(self._running), timeout,
            )
        if self._listener is not None:
            self._listener.join(max(0.05, deadline - time.monotonic()))
        self._pool.shutdown(wait=drained, timeout=1.0)
        return drained

    def stop_now(self) -> None:
        """Stop without waiting for running handlers (their leases expire if they never end)."""
        self._stopping.set()
        self._abort.set()
        self._wake.set()

    @property
    def alive(self) -> bool:
        listener_ok = self._listener is None or self._listener.alive
        return self._thread.is_alive() and listener_ok

    @property
    def in_flight(self) -> dict[str, int]:
        return {topic: state.in_flight for topic, state in self._topics.items()}

    # -- handler threads ------------------------------------------------------------------

    def _deliver(self, timer: ClaimedTimer) -> None:
        spec = self._topics[timer.topic].spec
        if self._stopping.is_set():
            outcome = RELEASE  # claimed but not started: hand it back at once
        else:
            try:
                outcome = deliver(
                    spec, timer, self._default_retry, self._hooks, self._store.server_now_ms
                )
            except BaseException as exc:  # SystemExit and the like must not lose the slot
                policy = spec.retry or self._default_retry
                try:
                    outcome = failure_outcome(timer, exc, policy, self._hooks)
                except BaseException:  # never leave a delivery without an outcome
                    log.exception("could not decide the outcome of %s/%s; retrying it",
                                  timer.topic, timer.timer_id, extra=log_extra(timer))
                    delay_ms = math.ceil(policy.delay(timer.attempt) * 1000)
                    outcome = Outcome("retry", delay_ms=delay_ms)
        self._completed.append((timer, outcome))
        if self._sleeping:
            self._wake.set()
        if self._exited.is_set():
            self._settle_late()

    def _settle_late(self) -> None:
        """Settle outcomes that arrive after the poller exited (a handler outlived stop)."""
        outcomes = self._take_completed()
        if not outcomes:
            return
        batch = self._store.batch()
        settle(batch, outcomes)
        try:
            self._store.execute(batch)
        except Exception as exc:
            log.error("could not settle %d late outcome(s); their leases will expire: %s",
                      len(outcomes), exc)

    def _take_completed(self) -> list[tuple[ClaimedTimer, Outcome]]:
        taken = []
        while True:
            try:
                taken.append(self._completed.popleft())
            except IndexError:
                return taken

    # -- the poller thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._abort.is_set():
                try:
                    if not self._turn():
                        break
                except Exception:
                    log.exception("poller turn failed; trying again in 1s")
                    self._abort.wait(1.0)
        finally:
            self._exited.set()
            self._settle_late()

    def _turn(self) -> bool:
        """One claim-settle-renew round trip and the sleep after it; False when done."""
        self._wake.clear()
        now = time.monotonic()
        batch = self._store.batch()
        outcomes = self._take_completed()
        for timer, outcome in outcomes:
            if self._running.pop((timer.topic, timer.timer_id, timer.token), None) is not None:
                self._topics[timer.topic].in_flight -= 1
                self._metrics.outcome(outcome.kind)
        settle(batch, outcomes)
        self._settling = {(timer.topic, timer.timer_id): timer for timer, _ in outcomes}
        self._add_renewals(batch, now)
        stopping = self._stopping.is_set()
        if not stopping:
            self._add_claims(batch, now)
        if batch:
            results = self._send(batch)
            if results is not None:
                self._apply(batch, results)
            elif self._abort.is_set():
                return False
        if stopping and not self._running and not self._completed:
            return False
        self._sleep()
        return True

    def _add_claims(self, batch: Batch, now: float) -> None:
        while self._woken:
            topic = self._woken.popleft()
            for name, state in self._topics.items():
                if topic is None or name == topic:
                    state.next_claim_at = 0.0
        for topic, state in self._topics.items():
            if state.free > 0 and state.next_claim_at <= now:
                batch.claim(topic, state.spec.lease_ms, state.free)

    def _add_renewals(self, batch: Batch, now: float) -> None:
        if now < self._next_renewal:
            return
        due: dict[str, list[tuple[str, str]]] = {}
        next_renewal = math.inf
        for running in self._running.values():
            if running.lease_lost:
                continue
            if running.renew_at <= now:
                timer = running.timer
                due.setdefault(timer.topic, []).append((timer.timer_id, timer.token))
                running.renew_at = now + self._topics[timer.topic].lease_renew_s
            next_renewal = min(next_renewal, running.renew_at)
        self._next_renewal = next_renewal
        for topic, items in due.items():
            batch.extend(topic, self._topics[topic].spec.lease_ms, items)

    def _send(self, batch: Batch) -> list[Any] | None:
        was_healthy = self._tracker.healthy
        # Outcomes are worth waiting for Redis until stop()'s deadline (otherwise their
        # timers are delivered again after their leases expire); claims and renewals are
        # of no use once stopping.
        give_up_on = self._abort if batch.settles else self._stopping
        try:
            results = self._tracker.call(
                lambda: self._store.execute(batch),
                give_up=give_up_on.is_set,
                sleep=give_up_on.wait,
            )
        except Exception as exc:
            if give_up_on.is_set():
                log.error("gave up on Redis while stopping: %s", exc)
                return None
            raise
        if not was_healthy:
            self.wake(_ALL_TOPICS)  # wake-ups published during the outage were lost
        return results

    def _apply(self, batch: Batch, results: list[Any]) -> None:
        now = time.monotonic()
        for op, result in zip(batch.ops, results, strict=True):
            if op.kind == "claim":
                self._metrics.add("claimed", len(result.timers))
                self._claimed(op.topic, result, now)
            elif op.kind == "extend":
                renewed = (len(op.args) - 1) // 2 - len(result) // 2
                self._metrics.add("lease_renewals", renewed)
                for timer_id, token in zip(result[::2], result[1::2], strict=True):
                    self._lease_lost(op.topic, timer_id, token)
            elif result:
                self._metrics.add("stale_acks", len(result))
                for timer_id in result:
                    timer = self._settling.get((op.topic, timer_id))
                    extra = log_extra(timer) if timer else {"topic": op.topic,
                                                            "timer_id": timer_id, "attempt": None}
                    log.info(
                        "%s of timer %s/%s skipped: re-set, cancelled or re-claimed while its "
                        "handler ran", op.kind, op.topic, timer_id, extra=extra,
                    )

    def _claimed(self, topic: str, result: ClaimResult, now: float) -> None:
        state = self._topics[topic]
        renew_at = now + state.lease_renew_s
        for timer in result.timers:
            state.in_flight += 1
            self._running[(topic, timer.timer_id, timer.token)] = _Running(timer, renew_at)
            self._pool.submit(partial(self._deliver, timer))
        if result.timers:
            self._next_renewal = min(self._next_renewal, renew_at)
        wait = self._max_poll_interval
        if result.next_ms is not None and result.server_now_ms is not None:
            wait = min(wait, max(0.0, (result.next_ms - result.server_now_ms) / 1000))
        state.next_claim_at = now + wait

    def _lease_lost(self, topic: str, timer_id: str, token: str) -> None:
        running = self._running.get((topic, timer_id, token))
        if running is not None and not running.lease_lost:
            running.lease_lost = True  # renewing it is of no use any more
            self._metrics.add("leases_lost")
            log.warning(
                "lease of timer %s/%s lost while its handler runs (re-set, cancelled, or "
                "expired); its outcome will be ignored",
                topic, timer_id, extra=log_extra(running.timer),
            )

    def _sleep(self) -> None:
        now = time.monotonic()
        wake_at = now + self._max_poll_interval
        if not self._stopping.is_set():
            for state in self._topics.values():
                if state.free > 0:
                    wake_at = min(wake_at, state.next_claim_at)
        wake_at = min(wake_at, self._next_renewal)
        # Handler threads set the event only while the poller sleeps (setting it costs
        # them a lock each time): say so first, then look at the deque once more, so that
        # an outcome appended just before is not left waiting.
        self._sleeping = True
        try:
            if wake_at > now and not self._woken and not self._completed:
                self._wake.wait(wake_at - now)
        finally:
            self._sleeping = False

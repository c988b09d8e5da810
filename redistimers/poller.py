"""The threaded engine: one poller thread claims due timers of every topic, a thread pool
runs their handlers, and the poller settles outcomes and renews leases in the same
pipelined round trips.

The poller thread owns all bookkeeping (slots, running deliveries, next claim times);
handler threads only append outcomes to a deque and set the wake event, and other
threads ask for claims through `wake()`.

A suspect (a timer whose previous delivery never reported back: its worker died or hung
past the lease) may be what ends its worker, so it is delivered alone: it waits until no
other handler of this process runs, is marked in Redis as running alone, and no other
handler starts while it runs. If it then ends its worker, the next claim knows it was its
own doing, and no neighbour is blamed for it. Both waits last at most the suspect's
lease_ttl, so that a suspect that hangs does not stop the worker.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import tenacity

from . import defaults
from .delivery import RELEASE, Hooks, Outcome, deliver, failure_outcome, log_extra, settle
from .failures import is_refused_access
from .metrics import MetricsCounter
from .outage import OutageTracker, keep_trying
from .retry import RetryPolicy
from .router import HandlerSpec
from .store import Batch, ClaimedTimer, ClaimResult, TimerStore, new_claimer_id
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


#: (topic, timer id, token): one delivery.
Key = tuple[str, str, str]

#: Longest sleep between claims while Redis is full, so that the worker soon sees that it
#: has room again (every claim tells).
_FULL_RECHECK_S = 5.0

#: Seconds between log lines about a poller turn that keeps failing the same way.
_REPEAT_LOG_S = 300.0

#: Waits before trying a failed poller turn again: 1 s, 2 s, 4 s... up to 30 s.
_FAILED_TURN_BACKOFF = tenacity.wait_exponential(multiplier=1, max=30)


class _Running:
    """A delivery whose handler has not reported back yet."""

    __slots__ = ("lease_lost", "renew_at", "timer")

    def __init__(self, timer: ClaimedTimer, renew_at: float) -> None:
        self.timer = timer
        self.renew_at = renew_at
        self.lease_lost = False


class _Pass:
    """The bookkeeping of `Poller.run_pending`: timers delivered, topics done."""

    __slots__ = ("done", "ran", "seen")

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.done: set[str] = set()
        self.ran = 0


class Poller:
    """Claims, runs and settles the timers of `specs` until stopped: in its own threads
    (`start`), or in one pass on the calling thread (`run_pending`, when `inline`)."""

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
        inline: bool = False,
    ) -> None:
        self._store = store
        self._hooks = hooks
        self._metrics = metrics
        self._topics = {topic: _Topic(spec) for topic, spec in specs.items()}
        self._tracker = tracker
        self._default_retry = default_retry
        self._max_poll_interval = max_poll_interval
        self._running: dict[Key, _Running] = {}
        self._claimer = new_claimer_id()  # whose claims Redis can answer again (claim.lua)
        #: Claimed suspects waiting to run alone, with when each began to wait.
        self._suspects: deque[tuple[ClaimedTimer, float]] = deque()
        #: Suspects running alone, and until when no other handler may start beside them.
        self._alone: dict[Key, float] = {}
        self._settling: dict[tuple[str, str], ClaimedTimer] = {}  # outcomes of this turn
        self._next_renewal = math.inf
        self._completed: deque[tuple[ClaimedTimer, Outcome]] = deque()
        #: Outcomes of a turn whose round trip failed: sent with the next one.
        self._unsent: list[tuple[ClaimedTimer, Outcome]] = []
        self._woken: deque[str | None] = deque()
        self._wake = threading.Event()
        self._sleeping = False  # the poller waits on _wake (see _sleep)
        self._stopping = threading.Event()
        self._abort = threading.Event()  # give up on Redis and running handlers now
        self._exited = threading.Event()
        self._late_lock = threading.Lock()
        self._failures = 0  # poller turns failed in a row
        self._logged: tuple[str, str] | None = None  # the failure last logged
        self._logged_at = 0.0
        self._pass: _Pass | None = None  # a run_pending pass going on
        self._thread = threading.Thread(target=self._run, name="redistimers-poller", daemon=True)
        self._watchdog = threading.Thread(
            target=self._watch, name="redistimers-watchdog", daemon=True
        )
        self._submit: Callable[[Callable[[], None]], None]
        self._pool: HandlerPool | None = None
        self._listener: WakeListener | None = None
        if inline:
            self._submit = _call
            return
        self._pool = HandlerPool(max(1, sum(spec.max_concurrent for spec in specs.values())))
        self._submit = self._pool.submit
        if specs:
            channels = {store.wake_channel(topic): topic for topic in specs}
            self._listener = WakeListener(store.client, channels, self.wake, tracker)

    # -- control, from any thread ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._watchdog.start()
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
        began = time.monotonic()
        deadline = began + max(0.0, timeout)
        self.request_stop()
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
                self.running_handlers, time.monotonic() - began,
            )
        if self._listener is not None:
            self._listener.join(max(0.05, deadline - time.monotonic()))
        if self._exited.is_set():
            self._watchdog.join(1.0)  # it ends as soon as the poller thread has
        if self._pool is not None:
            self._pool.shutdown(wait=drained, timeout=1.0)
        return drained

    def request_stop(self) -> None:
        """Stop claiming; `stop` waits for the rest."""
        self._stopping.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.signal_stop()  # no more claims, so no more use for wake-ups

    @property
    def topics(self) -> list[str]:
        """The topics this poller delivers."""
        return list(self._topics)

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
    def running_handlers(self) -> int:
        """Handlers running now (timers claimed and started, not yet reported back)."""
        return len(self._running) - len(self._suspects)

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
                if self._pass is not None and not isinstance(exc, Exception):
                    self._completed.append((timer, outcome))
                    raise  # Ctrl-C in run_pending's handler: its caller's to handle
            if self._pass is not None:
                self._pass.ran += 1
        self._completed.append((timer, outcome))
        if self._sleeping:
            self._wake.set()
        if self._exited.is_set():
            self._settle_late()

    def _settle_late(self) -> None:
        """Settle outcomes that arrive after the poller exited (a handler outlived stop),
        and count them as the poller would have."""
        with self._late_lock:  # handler threads may finish late together
            unsent, self._unsent = self._unsent, []
            outcomes = self._take_completed()
            if not outcomes and not unsent:
                return
            for timer, outcome in outcomes:
                key = (timer.topic, timer.timer_id, timer.token)
                if self._running.pop(key, None) is not None:
                    self._topics[timer.topic].in_flight -= 1
                    self._metrics.finished(
                        timer.topic, outcome.kind, outcome.failed, outcome.lateness_s,
                        outcome.duration_s,
                    )
            outcomes = unsent + outcomes
            batch = self._store.batch()
            settle(batch, outcomes)
            try:
                stale = [i for result in self._store.execute(batch) for i in result]
            except Exception as exc:
                log.error("could not settle %d late outcome(s); their leases will expire: %s",
                          len(outcomes), exc)
                return
            self._metrics.add("stale_acks", len(stale))

    def _take_completed(self) -> list[tuple[ClaimedTimer, Outcome]]:
        taken = []
        while True:
            try:
                taken.append(self._completed.popleft())
            except IndexError:
                return taken

    # -- the poller thread ----------------------------------------------------------------

    def _watch(self) -> None:
        """Log a round trip that Redis has not answered for a while: the poller thread
        cannot, since it is the one waiting (and so may the listener be)."""
        while not self._exited.wait(min(1.0, defaults.REDIS_STALL_NOTICE / 4)):
            self._tracker.watch()

    def _run(self) -> None:
        try:
            while not self._abort.is_set():
                try:
                    going = self._turn()
                except Exception as exc:
                    going = self._recover(exc)
                if not going:
                    break
                self._sleep()
        finally:
            self._exited.set()
            self._settle_late()

    def _recover(self, exc: Exception) -> bool:
        """After a failed turn that is not a Redis outage (those are waited out in _send):
        a bug, or an error Redis keeps answering. Turns are tried again with backoff until
        one works (what it returned), Redis refuses access, or the poller is aborted."""
        try:
            if is_refused_access(exc):
                raise exc
            self._turn_failed(exc)
            going = keep_trying(
                self._turn, retry_if=lambda error: not is_refused_access(error),
                wait=_FAILED_TURN_BACKOFF, give_up=self._abort.is_set, sleep=self._abort.wait,
                before_sleep=self._turn_failed,
            )
        except Exception as error:
            if is_refused_access(error):  # waiting will not mend a password or an ACL
                self._tracker.refuse(error)
            else:  # aborted while failing; the failure was logged when it began
                log.debug("poller stopped while its turns were failing: %s", error)
            return False
        log.warning("poller turns work again after %d failed", self._failures)
        self._failures, self._logged = 0, None
        return going

    def _turn_failed(self, exc: BaseException) -> None:
        """Log a failed turn once with its traceback, then again only if the failure changes
        or every few minutes."""
        self._failures += 1
        seen = (type(exc).__name__, str(exc))
        now = time.monotonic()
        if seen != self._logged:
            log.error("poller turn failed; trying again with backoff", exc_info=exc)
            self._logged, self._logged_at = seen, now
        elif now - self._logged_at >= _REPEAT_LOG_S:
            log.error("poller turns still failing (%d so far): %s: %s", self._failures, *seen)
            self._logged_at = now

    def run_pending(self) -> int:
        """Deliver every timer due now, one at a time on the calling thread, with the same
        claims, isolation of suspects and settling as the threads; returns how many ran.
        A timer that comes due again at once is left for later. Redis errors are raised
        (as RedisCallErrors), not waited out."""
        self._pass = run = _Pass()
        try:
            while True:
                self._turn()
                idle = not (self._running or self._completed or self._suspects)
                if idle and run.done.issuperset(self._topics):
                    return run.ran
        except BaseException:
            if self._completed or self._unsent:  # settle what ran, if Redis lets us
                self._exited.set()
                self._settle_late()
            raise
        finally:
            self._pass = None

    def _turn(self) -> bool:
        """One claim-settle-renew round trip; False when done."""
        self._wake.clear()
        now = time.monotonic()
        batch = self._store.batch(self._claimer)
        outcomes = self._take_completed()
        stopping = self._stopping.is_set()
        if stopping and self._suspects:  # never started: hand them back, suspicion kept
            outcomes += [(timer, RELEASE) for timer, _since in self._suspects]
            self._suspects.clear()
        alone = self._alone
        for timer, outcome in outcomes:
            key = (timer.topic, timer.timer_id, timer.token)
            if self._running.pop(key, None) is not None:
                self._topics[timer.topic].in_flight -= 1
                self._metrics.finished(
                    timer.topic, outcome.kind, outcome.failed, outcome.lateness_s,
                    outcome.duration_s,
                )
            if alone:
                alone.pop(key, None)
        # Outcomes of a turn that failed are sent again (their scripts are fenced by
        # tokens: one that did run answers "stale" the second time, and changes nothing).
        unsent, self._unsent = self._unsent, []
        outcomes = unsent + outcomes
        settle(batch, outcomes)
        self._settling = {(timer.topic, timer.timer_id): timer for timer, _ in outcomes}
        self._add_renewals(batch, now)
        self._take_wakeups()
        if not stopping:
            self._add_isolation(batch, now)
            if not self._isolating(now):
                self._add_claims(batch, now)
        if batch:
            try:
                results = self._send(batch)
            except BaseException:
                self._unsent = outcomes
                raise
            if results is not None:
                self._apply(batch, results)
            elif self._abort.is_set():
                return False
        return not (stopping and not self._running and not self._completed and not self._unsent)

    def _take_wakeups(self) -> None:
        """Topics woken since the last turn are claimed at the next claim."""
        while self._woken:
            topic = self._woken.popleft()
            for name, state in self._topics.items():
                if topic is None or name == topic:
                    state.next_claim_at = 0.0

    def _add_claims(self, batch: Batch, now: float) -> None:
        probe_full = self._tracker.full
        one_at_a_time = self._pass is not None
        for topic, state in self._topics.items():
            if state.free > 0 and state.next_claim_at <= now:
                limit = 1 if one_at_a_time else state.free
                batch.claim(topic, state.spec.lease_ms, limit, probe_full)

    def _isolating(self, now: float) -> bool:
        """No claims while a suspect waits to run alone, or runs alone within its window."""
        return bool(self._suspects) or any(until > now for until in self._alone.values())

    def _add_isolation(self, batch: Batch, now: float) -> None:
        """Mark the next suspect as running alone once no other handler runs (or once it
        has waited its lease_ttl): its handler starts when Redis has the mark."""
        if not self._suspects:
            return
        timer, since = self._suspects[0]
        spec = self._topics[timer.topic].spec
        if self.running_handlers == 0 or now >= since + spec.lease_ttl:
            batch.solo(timer.topic, spec.lease_ms, timer.timer_id, timer.token)

    def _start_alone(self, timer_id: str, token: str, now: float) -> None:
        """Start the suspect Redis marked as running alone (its new token), or drop it when
        its lease was lost meanwhile (empty token)."""
        if not self._suspects or self._suspects[0][0].timer_id != timer_id:
            return
        timer, _since = self._suspects.popleft()
        if self._suspects:  # the next one waits its lease_ttl from now on, at most
            self._suspects[0] = (self._suspects[0][0], now)
        key = (timer.topic, timer.timer_id, timer.token)
        state = self._topics[timer.topic]
        if not token:
            if self._running.pop(key, None) is not None:
                state.in_flight -= 1
            self._metrics.add("leases_lost")
            log.info("suspect timer %s/%s was re-set, cancelled or taken meanwhile; not run",
                     timer.topic, timer.timer_id, extra=log_extra(timer))
            return
        alone = timer._replace(token=token)
        self._running.pop(key, None)
        self._running[(alone.topic, alone.timer_id, alone.token)] = _Running(
            alone, now + state.lease_renew_s
        )
        self._next_renewal = min(self._next_renewal, now + state.lease_renew_s)
        self._alone[(alone.topic, alone.timer_id, alone.token)] = now + state.spec.lease_ttl
        self._metrics.add("isolated")
        log.info(
            "timer %s/%s: its previous delivery never reported back (its worker died or hung "
            "past the lease); delivering attempt %d alone", timer.topic, timer.timer_id,
            timer.attempt, extra=log_extra(timer),
        )
        self._submit(partial(self._deliver, alone))

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
        was_reachable = self._tracker.reachable
        # Outcomes are worth waiting for Redis until stop()'s deadline (otherwise their
        # timers are delivered again after their leases expire); claims and renewals are
        # of no use once stopping.
        give_up_on = self._abort if batch.settles else self._stopping
        if self._pass is not None:  # run_pending: its caller is told, not kept waiting
            with self._tracker.translating():
                results = self._store.execute(batch)
            if self._store.replication is not None and batch.settles:
                self._tracker.saw_replicas(batch.unreplicated)
            return results
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
        if not was_reachable:
            self.wake(_ALL_TOPICS)  # wake-ups published during the outage were lost
        if self._store.replication is not None and batch.settles:
            self._tracker.saw_replicas(batch.unreplicated)
        return results

    def _apply(self, batch: Batch, results: list[Any]) -> None:
        now = time.monotonic()
        full: bool | None = None
        for op, result in zip(batch.ops, results, strict=True):
            if op.kind == "claim":
                self._metrics.add("claimed", len(result.timers))
                self._claimed(op.topic, result, now)
                if result.full is not None:
                    full = full or result.full
            elif op.kind == "solo":
                self._start_alone(str(op.args[1]), result, now)
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
        if full is not None:
            self._tracker.saw_full(full)

    def _claimed(self, topic: str, result: ClaimResult, now: float) -> None:
        state = self._topics[topic]
        renew_at = now + state.lease_renew_s
        if result.replayed:
            log.warning(
                "Redis ran the claim of topic %s twice (it was sent again after a timeout): "
                "the second answered with the timers of the first", topic,
            )
        run = self._pass
        for timer in result.timers:
            state.in_flight += 1
            self._running[(topic, timer.timer_id, timer.token)] = _Running(timer, renew_at)
            if run is not None:
                if (topic, timer.timer_id) in run.seen:  # due again at once: leave it for later
                    self._completed.append((timer, RELEASE))
                    run.done.add(topic)
                    continue
                run.seen.add((topic, timer.timer_id))
            if result.suspects and timer.suspect:
                self._suspects.append((timer, now))
            else:
                self._submit(partial(self._deliver, timer))
        if result.timers:
            self._next_renewal = min(self._next_renewal, renew_at)
        if run is not None:  # claim again at once, until the topic has nothing due
            if not result.timers:
                run.done.add(topic)
            state.next_claim_at = math.inf if topic in run.done else 0.0
            return
        wait = self._max_poll_interval
        if self._tracker.full:
            wait = min(wait, _FULL_RECHECK_S)
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
            if self._suspects:  # when the next suspect may start even if others still run
                timer, since = self._suspects[0]
                wake_at = min(wake_at, since + self._topics[timer.topic].spec.lease_ttl)
            for until in self._alone.values():  # when claims may resume
                if until > now:
                    wake_at = min(wake_at, until)
            if not self._isolating(now):
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


def _call(task: Callable[[], None]) -> None:
    """Run a delivery at once, on the calling thread (run_pending)."""
    task()

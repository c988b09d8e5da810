"""Redis calls that outlast an outage: tenacity backoff, one log line down, one line up;
and the errors of other callers' calls, said in words (`translating`).

An outage is Redis unreachable, stalled (a call that has not been answered for a while),
or full (over `maxmemory`, so it refuses writes that need memory). Each is logged once
when it begins and once when it ends, and `healthy` is False meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
import tenacity

from . import defaults
from .errors import RedisCallError, RedisReplicationError
from .failures import call_error, is_out_of_memory, is_transient
from .store import NotReplicated

T = TypeVar("T")

log = logging.getLogger("redistimers.outage")

class OutageTracker:
    """Runs a worker's Redis calls again with exponential backoff and jitter until they
    succeed or the caller gives up, and knows whether Redis serves it (`healthy`).

    Only the worker's own threads change `healthy`; `errors` and `full_count` also count
    the failed calls of other callers (whose errors are raised to them instead of logged).
    """

    def __init__(self, where: str, who: str = "the default user") -> None:
        self.where = where
        self.who = who  # the Redis user, for errors
        self.errors = 0
        self.full_count = 0
        #: Outages the worker's threads met (unreachable or stalled, until answered).
        self.outages = 0
        #: Why the worker gave up: Redis refused its credentials or permissions.
        self.refused: Exception | None = None
        self._lock = threading.Lock()
        self._answered = False  # Redis has answered the worker at least once
        self._down_since: float | None = None
        self._full_since: float | None = None
        self._unreplicated_since: float | None = None
        self._call_started: float | None = None

    def reset_after_fork(self) -> None:
        """In a forked child: a lock held by a parent's thread would stay held for ever, and
        the parent's outage is not the child's to report."""
        self._lock = threading.Lock()
        self._answered = False
        self._down_since = self._full_since = self._call_started = None
        self._unreplicated_since = None
        self.refused = None

    @property
    def healthy(self) -> bool:
        """False while Redis is unreachable, stalled or full, as the worker last saw it, and
        for good once Redis refused the worker's credentials or permissions."""
        return self._down_since is None and self._full_since is None and self.refused is None

    @property
    def full(self) -> bool:
        """Redis was over maxmemory at the worker's last write."""
        return self._full_since is not None

    @property
    def reachable(self) -> bool:
        """Redis answered the worker's last call (full or not)."""
        return self._down_since is None

    def count_error(self, exc: BaseException) -> None:
        """Count a failed call of another caller, who is told of it by an exception."""
        with self._lock:
            self.errors += 1
            if is_out_of_memory(exc):
                self.full_count += 1

    def call_error(self, exc: BaseException) -> RedisCallError | None:
        """The RedisCallError to raise to another caller for `exc` (counted), or None when
        `exc` is an answer about the call itself, to raise as Redis gave it."""
        if isinstance(exc, NotReplicated):
            replication = exc.replication
            self.count_error(exc)
            return RedisReplicationError(
                f"Redis at {self.where} ran the write, but only {exc.acked} of the "
                f"{replication.replicas} replicas required (min_replicas) confirmed it within "
                f"{replication.timeout_ms / 1000:g}s (replica_timeout): it stays unless the "
                "primary fails before a replica has it"
            )
        error = call_error(exc, self.where, self.who)
        if error is not None:
            self.count_error(exc)
        return error

    @contextlib.contextmanager
    def translating(self) -> Iterator[None]:
        """Raise Redis's errors in the block as RedisCallErrors that say what happened
        (unreachable, full, credentials or permissions refused). They are the caller's to
        handle: counted in the metrics, but neither logged nor changing `healthy`."""
        try:
            yield
        except (redis.exceptions.RedisError, NotReplicated) as exc:
            error = self.call_error(exc)
            if error is None:
                raise
            raise error from exc

    def failed(self, exc: BaseException) -> None:
        """Record a failed call of the worker; the first failure of an outage is logged."""
        if is_out_of_memory(exc):
            with self._lock:
                self.errors += 1
            self.saw_full(True)
            return
        with self._lock:
            self.errors += 1
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
                self.outages += 1
        if first and not self._answered:
            log.warning("waiting for Redis at %s: %s; trying again with backoff", self.where, exc)
        elif first:
            log.error("Redis at %s unavailable: %s; retrying with backoff", self.where, exc)

    def succeeded(self) -> None:
        """Record a successful call; the end of an outage is logged."""
        if self._down_since is None:
            self._answered = True
            return
        with self._lock:
            down_since, self._down_since = self._down_since, None
            answered_before, self._answered = self._answered, True
        if down_since is not None:
            log.warning(
                "Redis at %s answering %safter %.1fs", self.where,
                "again " if answered_before else "", time.monotonic() - down_since,
            )

    def refuse(self, exc: Exception) -> None:
        """Record that Redis refused the worker's credentials or permissions (`exc`, said in
        words): logged once, whichever of the worker's threads meets it first."""
        error = call_error(exc, self.where, self.who) or exc
        with self._lock:
            first = self.refused is None
            if first:
                self.refused = error
        if first:
            log.error("%s; this worker stops delivering", error)

    def saw_full(self, full: bool) -> None:
        """Record whether Redis was over maxmemory at the worker's last write; the start and
        the end of a full spell are logged once each."""
        with self._lock:
            if full:
                self.full_count += 1
            began = full and self._full_since is None
            ended_since = self._full_since if not full else None
            if began:
                self._full_since = time.monotonic()
            elif ended_since is not None:
                self._full_since = None
        if began:
            log.error(
                "Redis at %s is full (used memory over maxmemory): it refuses new timers; "
                "this worker goes on delivering, which frees memory", self.where,
            )
        elif ended_since is not None:
            log.warning(
                "Redis at %s has room again after %.1fs", self.where,
                time.monotonic() - ended_since,
            )

    def saw_replicas(self, short: Exception | None) -> None:
        """Record whether the worker's last settled outcomes reached the replicas it waits
        for (`short`: why not); the start and the end of a shortfall are logged once each."""
        with self._lock:
            began = short is not None and self._unreplicated_since is None
            ended_since = self._unreplicated_since if short is None else None
            if began:
                self._unreplicated_since = time.monotonic()
            elif ended_since is not None:
                self._unreplicated_since = None
        if began:
            log.error(
                "Redis at %s: %s; this worker goes on (an outcome lost in a failover means its "
                "timer is delivered again)", self.where, short,
            )
        elif ended_since is not None:
            log.warning(
                "Redis at %s: the replicas confirm writes again after %.1fs", self.where,
                time.monotonic() - ended_since,
            )

    def watch(self) -> None:
        """Log a worker's call that has waited for Redis longer than REDIS_STALL_NOTICE (a
        stalled server or a silent network): the outage begins then. Called now and then
        from another thread than the one waiting."""
        started = self._call_started
        if started is None or self._down_since is not None:
            return
        waited = time.monotonic() - started
        if waited < defaults.REDIS_STALL_NOTICE:
            return
        with self._lock:
            if self._down_since is not None or self._call_started != started:
                return
            self._down_since = started
            self.outages += 1
        log.error(
            "Redis at %s has not answered for %.1fs (a stalled server or a lost network); "
            "still waiting: leases may expire meanwhile", self.where, waited,
        )

    def call(
        self,
        fn: Callable[[], T],
        *,
        give_up: Callable[[], bool],
        sleep: Callable[[float], object],
    ) -> T:
        """`fn()`, tried again on transient Redis errors (and while Redis is full) until it
        succeeds or `give_up()`.

        `sleep` waits between tries and should return early when the caller is stopping.
        The last error is raised when the caller gives up.
        """
        self._call_started = time.monotonic()
        try:  # the common case, without building a retrying loop on every call
            result = fn()
        except Exception as exc:
            self._call_started = None
            if not _worth_waiting_out(exc):
                raise
            self.failed(exc)
            if give_up():
                raise
        else:
            self._call_started = None
            self.succeeded()
            return result

        def attempt() -> T:
            self._call_started = time.monotonic()
            return fn()

        def before_sleep(exc: BaseException) -> None:
            self._call_started = None
            self.failed(exc)

        try:
            result = keep_trying(
                attempt, retry_if=_worth_waiting_out, wait=REDIS_BACKOFF, give_up=give_up,
                sleep=sleep, before_sleep=before_sleep,
            )
        except Exception as exc:
            if _worth_waiting_out(exc):
                self.failed(exc)
            raise
        finally:
            self._call_started = None
        self.succeeded()
        return result


#: How long to wait before calling a Redis that failed again: exponential with jitter.
REDIS_BACKOFF = tenacity.wait_random_exponential(
    multiplier=defaults.REDIS_BACKOFF_INITIAL * 2,
    min=defaults.REDIS_BACKOFF_INITIAL,
    max=defaults.REDIS_BACKOFF_MAX,
)


def keep_trying(
    fn: Callable[[], T],
    *,
    retry_if: Callable[[BaseException], bool],
    wait: tenacity.wait.wait_base,
    give_up: Callable[[], bool],
    sleep: Callable[[float], object],
    before_sleep: Callable[[BaseException], object],
) -> T:
    """`fn()` until it succeeds, fails with an error `retry_if` refuses, or `give_up()`:
    tenacity's loop, the one backoff of every retry of the library. Callers try once
    themselves first, so that the common case builds no loop; this tries again at once,
    then after `wait`'s delays. `before_sleep` sees each error waited on; the last error
    is raised."""

    def note(state: tenacity.RetryCallState) -> None:
        if state.outcome is not None:
            exc = state.outcome.exception()
            if exc is not None:
                before_sleep(exc)

    def pause(seconds: float) -> None:
        sleep(seconds)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(retry_if),
        wait=wait,
        stop=lambda _state: give_up(),
        sleep=pause,
        before_sleep=note,
        reraise=True,
    )
    return retrying(fn)


def _worth_waiting_out(exc: BaseException) -> bool:
    return is_transient(exc) or is_out_of_memory(exc)

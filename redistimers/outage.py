"""Redis calls that outlast an outage: tenacity backoff, one log line down, one line up.

An outage is Redis unreachable, stalled (a call that has not been answered for a while),
or full (over `maxmemory`, so it refuses writes that need memory). Each is logged once
when it begins and once when it ends, and `healthy` is False meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
import tenacity

from . import defaults

T = TypeVar("T")

log = logging.getLogger("redistimers.outage")

#: Errors that mean "Redis cannot serve us right now" rather than "this call is wrong":
#: connection loss, timeouts, a server still loading its data, a replica mid-failover.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)

_OUT_OF_MEMORY: tuple[type[Exception], ...] = tuple(
    cls for cls in (getattr(redis.exceptions, "OutOfMemoryError", None),) if cls is not None
)


#: Errors that mean "Redis will not let this user do this": a wrong password, a missing
#: ACL permission. Waiting does not help (redis-py makes the first kind a ConnectionError).
ACCESS_ERRORS: tuple[type[Exception], ...] = tuple(
    cls
    for cls in (
        redis.exceptions.AuthenticationError,
        getattr(redis.exceptions, "AuthorizationError", None),
        getattr(redis.exceptions, "NoPermissionError", None),
    )
    if cls is not None
)

#: How Redis words refused credentials, where redis-py does not make them an
#: AuthenticationError (inside a script, say).
_BAD_CREDENTIALS_WORDS = (
    "NOAUTH", "WRONGPASS", "invalid username-password", "Authentication required",
)

#: How Redis words a refused command or key inside a script (it names neither), or a
#: refused command outside one (redis-py's NoPermissionError, or a plain error).
_REFUSED_WORDS = (
    "NOPERM", "no permissions to", "can't run this command", "can't access at least one",
    *_BAD_CREDENTIALS_WORDS,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth waiting out: Redis unreachable, loading, failing over."""
    return isinstance(exc, TRANSIENT_ERRORS) and not is_refused_access(exc)


def is_refused_access(exc: BaseException) -> bool:
    """True when Redis refused this client: authentication failed, or its user lacks an ACL
    permission for a command, key or channel."""
    if isinstance(exc, ACCESS_ERRORS):
        return True
    text = str(exc)
    return isinstance(exc, redis.exceptions.ResponseError) and any(
        words in text for words in _REFUSED_WORDS
    )


def is_bad_credentials(exc: BaseException) -> bool:
    """True when Redis refused the user name or password (not a permission)."""
    return isinstance(exc, redis.exceptions.AuthenticationError) or (
        isinstance(exc, redis.exceptions.ResponseError)
        and any(words in str(exc) for words in _BAD_CREDENTIALS_WORDS)
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True when Redis refused a write for want of memory (used memory over maxmemory).

    redis-py maps the "-OOM" reply of a plain command to OutOfMemoryError (stripping
    "OOM" from the message); Redis 6 reports it from inside a script as a plain error.
    """
    if isinstance(exc, _OUT_OF_MEMORY):
        return True
    text = str(exc)
    return isinstance(exc, redis.exceptions.ResponseError) and (
        text.startswith("OOM") or "OOM command not allowed" in text
        or "used memory > 'maxmemory'" in text
    )


class OutageTracker:
    """Runs a worker's Redis calls again with exponential backoff and jitter until they
    succeed or the caller gives up, and knows whether Redis serves it (`healthy`).

    Only the worker's own threads change `healthy`; `errors` and `full_count` also count
    the failed calls of other callers (whose errors are raised to them instead of logged).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.errors = 0
        self.full_count = 0
        #: Why the worker gave up: Redis refused its credentials or permissions.
        self.refused: Exception | None = None
        self._lock = threading.Lock()
        self._answered = False  # Redis has answered the worker at least once
        self._down_since: float | None = None
        self._full_since: float | None = None
        self._call_started: float | None = None

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

    def refuse(self, error: Exception) -> None:
        """Record that Redis refused the worker's credentials or permissions: logged once,
        whichever of the worker's threads meets it first."""
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

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self._call_started = None
            if state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    self.failed(exc)

        def wait(seconds: float) -> None:
            sleep(seconds)

        def attempt() -> T:
            self._call_started = time.monotonic()
            return fn()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_worth_waiting_out),
            wait=tenacity.wait_random_exponential(
                multiplier=defaults.REDIS_BACKOFF_INITIAL * 2,
                min=defaults.REDIS_BACKOFF_INITIAL,
                max=defaults.REDIS_BACKOFF_MAX,
            ),
            stop=lambda _state: give_up(),
            sleep=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except Exception as exc:
            if _worth_waiting_out(exc):
                self.failed(exc)
            raise
        finally:
            self._call_started = None
        self.succeeded()
        return result


def _worth_waiting_out(exc: BaseException) -> bool:
    return is_transient(exc) or is_out_of_memory(exc)
